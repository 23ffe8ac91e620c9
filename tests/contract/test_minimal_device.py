"""A camera written from the documents alone (tests/contract/minimal_device.py) provisions,
verifies its token and holds the control channel against the mock, a real subprocess
(docs/design.md §2.12, issue 23)."""

from __future__ import annotations

import ast
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock.testing import MockCloud, running_mock_cloud
from tests.contract import minimal_device
from tests.contract.minimal_device import MinimalDevice
from tests.eventually import eventually

VECTORS = json.loads((Path(__file__).parents[2] / "docs/api/vectors.json").read_text())
DEVICE_ID = "02-4D-1B-00-00-2A"  # a spelling the poll accepts; the wire has the canonical one
PASSWORD = "Label-Pass 42 ü"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    # Heartbeats of 1 s: the cloud's pings, and its closing of a silent device, are exercised.
    env = {"CAMAGENT_MOCK_HEARTBEAT_S": "1"}
    with running_mock_cloud(tmp_path_factory.mktemp("minimal") / "cloud", env=env) as running:
        yield running


def test_it_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(Path(minimal_device.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_it_computes_every_vector() -> None:
    derivation = VECTORS["key_derivation"]
    key = minimal_device.derive_key(derivation["password"], derivation["device_id"])
    assert key.hex() == derivation["key_hex"]
    poll = VECTORS["poll_proof"]
    got = minimal_device.proof(
        bytes.fromhex(poll["key_hex"]), poll["device_id"], poll["ts"], poll["nonce"]
    )
    assert got == poll["proof"]
    sealed = VECTORS["sealed_token"]
    plain = minimal_device.unseal(
        bytes.fromhex(sealed["key_hex"]), sealed["aad"], sealed["sealed_token"]
    )
    assert plain == sealed["plaintext"]
    signed = VECTORS["token_signature"]
    public = bytes.fromhex(signed["public_key_hex"])
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    claims = minimal_device.verify_token(
        signed["token"],
        [Ed25519PublicKey.from_public_bytes(public)],
        signed["payload"]["sub"],
        "camera",
        "https://CLOUD.example.com:443/",
    )
    assert claims == signed["payload"]
    with pytest.raises(minimal_device.DeviceError, match="is not"):
        minimal_device.verify_token(
            signed["token"],
            [Ed25519PublicKey.from_public_bytes(public)],
            signed["payload"]["sub"],
            "camera",
            "https://cloud.example.com:8443",
        )
    for case in VECTORS["device_ids"]:
        if case["canonical"] is not None:
            assert minimal_device.canonical_id(case["input"]) == case["canonical"]


def test_it_provisions_verifies_and_holds_the_channel(cloud: MockCloud) -> None:
    device = MinimalDevice(cloud.url, DEVICE_ID, PASSWORD, cloud.ssl_context())
    device.fetch_keys()
    assert device.poll() is None  # not added yet: 204
    session = cloud.login()
    camera = cloud.add_camera(session, "02:4d:1b:00:00:2a", PASSWORD)
    token = device.poll(wait=5)
    assert token is not None
    assert token == camera["token"]

    hello = device.connect()
    assert hello["heartbeat_s"] == 1
    stop = threading.Event()
    ended: list[int | None] = []
    serving = threading.Thread(target=lambda: ended.append(device.serve(stop)), daemon=True)
    serving.start()
    try:
        eventually(
            lambda: cloud.camera(session, camera["camera_id"])["status"],
            until=lambda status: status == "online",
            timeout=10,
            what="the camera online in the cloud",
        )
        # The cloud's keep-alive pings are answered, so the cloud keeps the channel.
        assert device.channel is not None
        channel = device.channel
        eventually(lambda: channel.pings >= 3, timeout=15, what="three pings answered")
        status, answer = cloud.command(session, camera["camera_id"], "ping")
        assert status == 200, answer
        assert answer["ok"] is True
        assert answer["data"]["pong"] is True
        assert answer["data"]["device_id"] == "02:4d:1b:00:00:2a"
        assert cloud.camera(session, camera["camera_id"])["status"] == "online"

        # Deleting the camera revokes its token: 4401, and the device forgets it.
        cloud.delete_camera(session, camera["camera_id"])
        serving.join(10)
        assert ended == [4401]
        assert device.token is None
    finally:
        stop.set()
        serving.join(10)
