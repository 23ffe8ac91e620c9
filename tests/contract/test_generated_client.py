"""Code generated from docs/api/openapi.yaml, as a stranger would make it, runs the
owner's story against a real mock: a wrong password answers a model (not an exception),
then log in, add a camera, list it, delete it. Two generators: openapi-python-client (a
whole client) and datamodel-code-generator (pydantic models, sent with the standard
library).

Each generator must model every schema of the document: a schema openapi-python-client
cannot model is left out of the client with each answer that uses it (issue 23: the coded
errors were).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_mock.testing import MockCloud, running_mock_cloud

DOCUMENT = Path(__file__).resolve().parents[2] / "docs/api/openapi.yaml"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
MODELS_GENERATOR = Path(sys.executable).parent / "datamodel-codegen"
PACKAGE = "camagent_api_client"
# No post hooks: the generated code is imported, not read, so it needs no formatter.
CONFIG = "post_hooks: []\n"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[MockCloud]:
    with running_mock_cloud(tmp_path / "cloud") as running:
        yield running


def _generate(into: Path) -> str:
    """Generate the client package into `into`; return what the generator printed."""
    config = into / "config.yaml"
    into.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(DOCUMENT),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(into / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=into,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


@pytest.mark.timeout(300)
def test_a_generated_client_runs_the_owners_story(
    cloud: MockCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert GENERATOR.is_file(), "pip install openapi-python-client (a test requirement)"
    output = _generate(tmp_path / "generated")
    # Every schema modelled; the only answers left out are the binary ones (pictures,
    # playlists, media segments), which the generator does not model by design.
    assert "Unable to process schema" not in output, output[-4000:]
    for line in output.splitlines():
        if line.startswith("Cannot parse response"):
            assert "Unsupported content_type" in line, line

    monkeypatch.syspath_prepend(str(tmp_path / "generated"))
    client_module: Any = importlib.import_module(PACKAGE)
    models: Any = importlib.import_module(f"{PACKAGE}.models")
    login: Any = importlib.import_module(f"{PACKAGE}.api.auth.login")
    add_camera: Any = importlib.import_module(f"{PACKAGE}.api.cameras.add_camera")
    list_cameras: Any = importlib.import_module(f"{PACKAGE}.api.cameras.list_cameras")
    delete_camera: Any = importlib.import_module(f"{PACKAGE}.api.cameras.delete_camera")

    anonymous = client_module.Client(
        base_url=cloud.url, verify_ssl=cloud.ssl_context(), raise_on_unexpected_status=True
    )
    with anonymous:
        wrong = login.sync_detailed(
            client=anonymous, body=models.LoginRequest(login="admin", password="not-the-password")
        )
        right = login.sync_detailed(
            client=anonymous,
            body=models.LoginRequest(login="admin", password=cloud.admin_password),
        )
    assert wrong.status_code == 401
    assert isinstance(wrong.parsed, models.WrongLogin)
    assert wrong.parsed.error.value == "wrong_login"
    assert wrong.parsed.message
    assert isinstance(right.parsed, models.LoginAnswer), right.content[:300]

    owner = client_module.AuthenticatedClient(
        base_url=cloud.url,
        token=right.parsed.session,
        verify_ssl=cloud.ssl_context(),
        raise_on_unexpected_status=True,
    )
    with owner:
        added = add_camera.sync_detailed(
            client=owner,
            body=models.AddCamera(device_id="02-77-31-D1-AF-AE", password="label-password"),
        )
        assert isinstance(added.parsed, models.CameraAdded), added.content[:300]
        assert added.parsed.device_id == "02:77:31:d1:af:ae"
        camera_id = added.parsed.camera_id

        listed = list_cameras.sync_detailed(client=owner)
        assert isinstance(listed.parsed, models.CameraList)
        assert [c.camera_id for c in listed.parsed.cameras] == [camera_id]
        assert listed.parsed.cameras[0].status.value == "waiting"

        deleted = delete_camera.sync_detailed(camera_id, client=owner)
        assert deleted.status_code == 204
        again = list_cameras.sync_detailed(client=owner)
        assert again.parsed.cameras == []


def _call(
    cloud: MockCloud, method: str, path: str, body: str | None = None, session: str = ""
) -> tuple[int, Any]:
    """One request with the standard library: the status and the JSON answer (or None)."""
    headers = {"Content-Type": "application/json"}
    if session:
        headers["Authorization"] = f"Bearer {session}"
    request = urllib.request.Request(
        cloud.url + path,
        data=body.encode() if body is not None else None,
        method=method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, context=cloud.ssl_context(), timeout=30) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
        error.close()
    return status, json.loads(raw) if raw else None


@pytest.mark.timeout(300)
def test_models_generated_by_datamodel_code_generator_read_the_owners_story(
    cloud: MockCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MODELS_GENERATOR.is_file(), "pip install datamodel-code-generator (a test requirement)"
    into = tmp_path / "models"
    into.mkdir()
    done = subprocess.run(
        [
            str(MODELS_GENERATOR),
            "--input",
            str(DOCUMENT),
            "--input-file-type",
            "openapi",
            "--output",
            str(into / "camagent_models.py"),
            "--output-model-type",
            "pydantic_v2.BaseModel",
            "--disable-warnings",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=into,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    monkeypatch.syspath_prepend(str(into))
    models: Any = importlib.import_module("camagent_models")

    wrong_body = models.LoginRequest(login="admin", password="not-the-password")
    status, answer = _call(cloud, "POST", "/v1/auth/login", wrong_body.model_dump_json())
    assert status == 401
    wrong = models.WrongLogin.model_validate(answer)
    assert wrong.error.value == "wrong_login"

    right_body = models.LoginRequest(login="admin", password=cloud.admin_password)
    status, answer = _call(cloud, "POST", "/v1/auth/login", right_body.model_dump_json())
    assert status == 200
    session = models.LoginAnswer.model_validate(answer).session

    # The models hold the ID grammar: a mistyped MAC is refused before it is sent.
    with pytest.raises(ValueError, match="pattern"):
        models.AddCamera(device_id="02:aa:bb:cc:dd:O7", password="label-password")
    add = models.AddCamera(device_id="02-77-31-D1-AF-AE", password="label-password")
    status, answer = _call(
        cloud, "POST", "/v1/cameras", add.model_dump_json(exclude_none=True), session
    )
    assert status == 201, answer
    added = models.CameraAdded.model_validate(answer)
    assert added.device_id == "02:77:31:d1:af:ae"

    status, answer = _call(cloud, "GET", "/v1/cameras", session=session)
    assert status == 200
    listed = models.CameraList.model_validate(answer)
    assert [c.camera_id for c in listed.cameras] == [added.camera_id]

    status, _ = _call(cloud, "DELETE", f"/v1/cameras/{added.camera_id}", session=session)
    assert status == 204
    status, answer = _call(cloud, "GET", "/v1/cameras", session=session)
    assert models.CameraList.model_validate(answer).cameras == []
