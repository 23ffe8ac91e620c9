"""Start the mock cloud as a real subprocess, for end-to-end tests and the demo.

    from cloud_mock.testing import running_mock_cloud

    with running_mock_cloud(tmp_path / "cloud") as cloud:
        url, data_dir, process = cloud            # also cloud.url, cloud.ca_file, ...
        session = cloud.login()                   # admin, password from the data dir
        camera = cloud.add_camera(session, "aa:bb:cc:dd:ee:ff", "label-password")
        sealed = camera["sealed_token"]           # what a camera takes outside its poll
        nvr = cloud.add_registrator(session, "Server room")   # then cloud.activate(...)
        cloud.provisioning_log("aa:bb:cc:dd:ee:ff")

The sync helpers use only the standard library (urllib), so they work from sync tests
and, through `asyncio.to_thread`, from async ones.  Async clients can build their own
session with `ssl=cloud.ssl_context()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_FILE = "cloud_mock.log"
START_TIMEOUT_S = 30.0


class MockCloudError(RuntimeError):
    """The mock did not start, or an API call through the helpers failed."""


class MockCloud(NamedTuple):
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    # --- files the mock writes into its data directory --------------------------------

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def signing_key_file(self) -> Path:
        """`token-signing.pub.pem`: what an agent's `[cloud] trust_keys` should list."""
        return self.data_dir / "token-signing.pub.pem"

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def admin_password(self) -> str:
        return (self.data_dir / "admin-password").read_text().strip()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait (SIGKILL after `timeout`); return the exit status."""
        code = stop_process(self.process, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    # --- API helpers -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """One JSON API call; returns (status, decoded JSON body or None). Never raises on
        HTTP error statuses, only on network errors."""
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if session is not None:
            headers["Authorization"] = f"Bearer {session}"
        status, _, answer = self.request_raw(method, path, data, headers=headers, timeout=timeout)
        return status, answer

    def request_raw(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], Any]:
        """Send `data` exactly as given (malformed bodies too); returns (status, response
        headers, decoded JSON body or None). Never raises on HTTP error statuses."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if not self.url.startswith("https://"):
            raise MockCloudError(f"refusing a non-https mock URL {self.url!r}")
        request = urllib.request.Request(  # noqa: S310 - checked https just above
            self.url + path, data=data, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - https to our own mock
                request, context=self.ssl_context(), timeout=timeout
            ) as response:
                return response.status, dict(response.headers), _json_or_none(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), _json_or_none(error.read())

    def _ok(
        self, expected: int, method: str, path: str, body: Any = None, session: str | None = None
    ) -> Any:
        status, answer = self.request(method, path, body, session=session)
        if status != expected:
            raise MockCloudError(f"{method} {path}: HTTP {status} {answer!r}")
        return answer

    def login(self, login: str = "admin", password: str | None = None) -> str:
        """Log in (as admin by default) and return the session bearer.

        A captcha the mock asks for is solved through the test hooks (if it runs with
        them); any other refusal raises MockCloudError."""
        return str(self.login_body(login, password)["session"])

    def login_body(
        self,
        login: str = "admin",
        password: str | None = None,
        *,
        device: str = "cloud_mock.testing",
        software: str = "pytest",
    ) -> dict[str, Any]:
        """`login`, returning the whole 200 body ({session, session_id, user})."""
        body: dict[str, Any] = {
            "login": login,
            "password": self.admin_password if password is None else password,
            "device": device,
            "software": software,
        }
        status, answer = self.request("POST", "/v1/auth/login", body)
        if status == 428 and isinstance(answer, dict) and "captcha_id" in answer:
            body["captcha_id"] = answer["captcha_id"]
            body["captcha_answer"] = self.captcha_answer(answer["captcha_id"])
            status, answer = self.request("POST", "/v1/auth/login", body)
        if status != 200:
            raise MockCloudError(f"POST /v1/auth/login: HTTP {status} {answer!r}")
        result: dict[str, Any] = answer
        return result

    def add_camera(
        self, session: str, device_id: str, password: str, name: str = "", org: str | None = None
    ) -> dict[str, Any]:
        """POST /v1/cameras; returns {camera_id, token, sealed_token, device_id}.

        `sealed_token` is the form a camera takes on a card, by `token set`, over the LAN
        or by `set_token` (docs/design.md §2.9); `token` is what the poll delivers."""
        body: dict[str, Any] = {"device_id": device_id, "password": password, "name": name}
        if org is not None:
            body["org"] = org
        answer: dict[str, Any] = self._ok(201, "POST", "/v1/cameras", body, session)
        return answer

    def camera(self, session: str, camera_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._ok(200, "GET", f"/v1/cameras/{camera_id}", session=session)
        return answer

    def sealed_token(self, session: str, camera_id: str) -> str:
        """GET /v1/cameras/{id}/token: the camera's token sealed afresh under its claim's K,
        for a card or a push."""
        answer = self._ok(200, "GET", f"/v1/cameras/{camera_id}/token", session=session)
        return str(answer["sealed_token"])

    def change_camera_password(self, session: str, camera_id: str, password: str) -> dict[str, Any]:
        """PATCH /v1/cameras/{id} {password} (a waiting camera); returns {camera_id, token,
        sealed_token}."""
        answer: dict[str, Any] = self._ok(
            200, "PATCH", f"/v1/cameras/{camera_id}", {"password": password}, session
        )
        return answer

    def delete_camera(self, session: str, camera_id: str) -> None:
        self._ok(204, "DELETE", f"/v1/cameras/{camera_id}", session=session)

    def command(
        self, session: str, camera_id: str, name: str, args: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        return self.request(
            "POST",
            f"/v1/cameras/{camera_id}/commands",
            {"name": name, "args": dict(args or {})},
            session=session,
        )

    def add_registrator(
        self, session: str, name: str, note: str = "", device: str = "virtual"
    ) -> dict[str, Any]:
        """POST /v1/registrators; returns the registrator object."""
        answer: dict[str, Any] = self._ok(
            201,
            "POST",
            "/v1/registrators",
            {"name": name, "note": note, "device": device},
            session,
        )
        return answer

    def activate(self, session: str, registrator_id: str, code: str) -> dict[str, Any]:
        """POST /v1/registrators/{id}/activate; returns the linked registrator."""
        answer: dict[str, Any] = self._ok(
            200, "POST", f"/v1/registrators/{registrator_id}/activate", {"code": code}, session
        )
        return answer

    def registrator(self, session: str, registrator_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._ok(
            200, "GET", f"/v1/registrators/{registrator_id}", session=session
        )
        return answer

    def registration_token(self, session: str, title: str = "", note: str = "") -> str:
        """POST /v1/registrator-tokens; returns the token (rt_…)."""
        answer = self._ok(
            201, "POST", "/v1/registrator-tokens", {"title": title, "note": note}, session
        )
        return str(answer["token"])

    # --- test hooks (need test_hooks=True) ---------------------------------------------------

    def advance_clock(self, seconds: float) -> float:
        return float(self._ok(200, "POST", "/v1/test/clock", {"advance_s": seconds})["now"])

    def captcha_answer(self, captcha_id: str) -> str:
        """The answer to a live captcha (GET /v1/test/captcha/{id})."""
        quoted = urllib.parse.quote(captcha_id, safe="")
        return str(self._ok(200, "GET", f"/v1/test/captcha/{quoted}")["answer"])

    def set_settings(self, **changes: Any) -> dict[str, Any]:
        """Change account settings (captcha, max_sessions, session_idle_s) while running;
        None removes one. Returns all settings."""
        settings: dict[str, Any] = self._ok(200, "POST", "/v1/test/settings", changes)
        return settings

    def provisioning_log(self, device_id: str | None = None) -> list[dict[str, Any]]:
        query = f"?device_id={urllib.parse.quote(device_id)}" if device_id else ""
        polls: list[dict[str, Any]] = self._ok(200, "GET", f"/v1/test/provisioning/log{query}")[
            "polls"
        ]
        return polls

    def held_polls(self) -> int:
        """How many polls the mock holds now, waiting for a token."""
        held: int = self._ok(200, "GET", "/v1/test/provisioning/held")["held"]
        return held

    def inject_poll_fault(self, status: int = 503, retry_after: int = 1, count: int = 1) -> None:
        self._ok(
            200,
            "POST",
            "/v1/test/provisioning/fault",
            {"status": status, "retry_after": retry_after, "count": count},
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM, wait (SIGKILL after `timeout`); return the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def mock_command(
    data_dir: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    test_hooks: bool = True,
    fixtures: Path | None = None,
    packages: Path | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "cloud_mock",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if fixtures is not None:
        command += ["--fixtures", str(fixtures)]
    if packages is not None:
        command += ["--packages", str(packages)]
    if test_hooks:
        command.append("--test-hooks")
    return command


def mock_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the subprocess: this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def start_mock_cloud(
    data_dir: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    test_hooks: bool = True,
    fixtures: Path | None = None,
    packages: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> MockCloud:
    """Start `python -m cloud_mock` and return once it listens (it printed its URL).

    stderr (the mock's log) goes to DATA_DIR/cloud_mock.log.  `env` adds variables,
    e.g. {"CAMAGENT_MOCK_HEARTBEAT_S": "1"}.  `packages`: a directory of .deb/.whl files
    that `/install.sh` points to (`--packages`).  Raises MockCloudError with the log tail
    if the mock exits or does not get ready within `timeout`.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_file = data_dir / LOG_FILE
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            mock_command(
                data_dir,
                port=port,
                host=host,
                test_hooks=test_hooks,
                fixtures=fixtures,
                packages=Path(packages).resolve() if packages is not None else None,
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=mock_env(env),
            cwd=data_dir,
        )
    assert process.stdout is not None
    try:
        url = _read_url(process, process.stdout, timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        process.stdout.close()
        raise
    return MockCloud(url, data_dir, process)


def _read_url(process: subprocess.Popen[bytes], stdout: IO[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MockCloudError(
                    f"cloud_mock not ready after {timeout:g} s{_log_tail(process)}"
                )
            if not selector.select(min(remaining, 0.2)):
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                status = process.wait()
                raise MockCloudError(
                    f"cloud_mock exited with status {status} before it was "
                    f"ready{_log_tail(process)}"
                )
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode().strip()


def _log_tail(process: subprocess.Popen[bytes]) -> str:
    args = process.args if isinstance(process.args, list) else []
    with contextlib.suppress(ValueError, OSError, IndexError):
        data_dir = Path(str(args[args.index("--data-dir") + 1]))
        lines = (data_dir / LOG_FILE).read_text(errors="replace").splitlines()[-20:]
        return ":\n" + "\n".join(lines)
    return ""


@contextlib.contextmanager
def running_mock_cloud(data_dir: Path, **options: Any) -> Iterator[MockCloud]:
    """`start_mock_cloud` as a context manager that always stops the process."""
    cloud = start_mock_cloud(data_dir, **options)
    try:
        yield cloud
    finally:
        cloud.stop()
