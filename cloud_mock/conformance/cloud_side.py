"""What a person (or the cloud's own tooling) does on the cloud side during a run: add a
camera, revoke it, send it a command, activate an NVR code, make a registration token,
make the provisioning service answer 503, watch a camera (so that the cloud opens a video
tunnel to it), and add a camera in a second organization (a MAC squatter, §2.6).

Each action is a hook command when one is given (run as an argument vector, never through
a shell, with its inputs in the environment), else the cloud's user API as the mock
implements it (docs/api/openapi.yaml), with a session from a login. An action with
neither is unsupported: the checks that need it are skipped, and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

HOOK_TIMEOUT_S = 60.0
MAX_HOOK_OUTPUT = 64 * 1024
STOP_GRACE_S = 5.0  # a watch hook's time to end after SIGTERM
VIEWER_CONNECT_S = 10.0
VIEWER_MAX_MESSAGE = 16 * 1024 * 1024  # a live view's fragments, if the camera ever sent video


class CloudSideError(Exception):
    """A cloud-side action failed; the message says which and why."""


class Unsupported(CloudSideError):
    """No hook and no API session for this action."""


@dataclass(frozen=True)
class Hooks:
    """Commands (as typed: split with shlex, run without a shell)."""

    add_device: str | None = None  # DEVICE_ID, PASSWORD
    revoke_device: str | None = None  # DEVICE_ID
    send_command: str | None = None  # DEVICE_ID, COMMAND; stdout: {"ok", "data"} (optional)
    activate_code: str | None = None  # CODE
    registration_token: str | None = None  # stdout: the token
    overload: str | None = None  # the next poll answers 429 or 503 with Retry-After
    watch: str | None = None  # DEVICE_ID; a viewer of its live video: may run until ended
    add_device_elsewhere: str | None = None  # DEVICE_ID, PASSWORD; in a second organization


async def run_hook(command: str, env: dict[str, str], what: str) -> str:
    """Run a hook; its stdout. CloudSideError on a non-zero exit or a timeout."""
    argv = shlex.split(command)
    if not argv:
        raise CloudSideError(f"the {what} hook is empty")
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as error:
        raise CloudSideError(f"the {what} hook {argv[0]!r} cannot run: {error}") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), HOOK_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CloudSideError(f"the {what} hook ran longer than {HOOK_TIMEOUT_S:g} s") from None
    if process.returncode != 0:
        lines = err[-2000:].decode(errors="replace").strip().splitlines()
        last = lines[-1][:300] if lines else "(no message on stderr)"
        raise CloudSideError(f"the {what} hook exited with {process.returncode}: {last}")
    return out[:MAX_HOOK_OUTPUT].decode(errors="replace")


class Watching:
    """A viewer the kit started (so that the cloud opens a tunnel); `stop` ends it.

    `broken` is set when it can bring no tunnel any more (the viewer's socket closed, the
    hook failed); `state` says what it last saw, for a report."""

    def __init__(self) -> None:
        self.broken = asyncio.Event()
        self.state = ""

    def _broke(self, why: str) -> None:
        self.state = why
        self.broken.set()

    async def stop(self) -> None:
        raise NotImplementedError


class LiveView(Watching):
    """`GET /v1/cameras/{id}/live` as the mock serves it: a WebSocket the viewer only reads."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__()
        self.ws = ws
        self.received = 0  # bytes of video
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.received += len(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                try:
                    status = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(status, dict) and status.get("type") == "status":
                    self.state = (
                        f"the viewer's last status: {status.get('state')}: "
                        + str(status.get("message"))[:200]
                    )
        self._broke(f"the live view closed (code {self.ws.close_code}); {self.state}".strip())

    async def stop(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class WatchHook(Watching):
    """A `--watch-cmd` process: it may exit once it asked the cloud, or keep running (a
    viewer) until `stop` ends it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        super().__init__()
        self.process = process
        self._stderr: deque[str] = deque(maxlen=5)
        self._task = asyncio.create_task(self._wait())

    @classmethod
    async def start(cls, command: str, env: dict[str, str]) -> WatchHook:
        argv = shlex.split(command)
        if not argv:
            raise CloudSideError("the watch hook is empty")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise CloudSideError(f"the watch hook {argv[0]!r} cannot run: {error}") from None
        return cls(process)

    async def _wait(self) -> None:
        assert self.process.stderr is not None
        with contextlib.suppress(ValueError):  # a line longer than the reader's limit
            async for line in self.process.stderr:
                self._stderr.append(line[:300].decode(errors="replace").strip())
        code = await self.process.wait()
        if code != 0:
            last = self._stderr[-1] if self._stderr else "(no message on stderr)"
            self._broke(f"the watch hook exited with {code}: {last}")

    async def stop(self) -> None:
        for end in (self.process.terminate, self.process.kill):
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    end()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
                return
            except TimeoutError:
                continue
        self._task.cancel()  # ended, but a child of it still holds its stderr
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class CloudSide:
    session: aiohttp.ClientSession  # for the API, with the cloud's trust
    url: str
    hooks: Hooks = field(default_factory=Hooks)
    api_session: str | None = None  # the user API's bearer secret, when we have one
    cameras: dict[str, str] = field(default_factory=dict)  # device_id -> camera_id
    registrators: list[str] = field(default_factory=list)
    other_session: str | None = None  # a user's session in a second organization
    other_cameras: dict[str, str] = field(default_factory=dict)  # added there

    @classmethod
    async def log_in(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        hooks: Hooks,
        login: str | None,
        password: str | None,
        api_session: str | None,
        *,
        other_login: str | None = None,
        other_password: str | None = None,
    ) -> CloudSide:
        """Logged in as `login` (unless `api_session` is given), and as `other_login`, a
        user of a second organization, when its password is given."""
        side = cls(session, url, hooks, api_session)
        if api_session is None and login and password:
            side.api_session = await side._log_in(login, password)
        if other_login and other_password:
            side.other_session = await side._log_in(other_login, other_password)
        return side

    async def _log_in(self, login: str, password: str) -> str:
        answer = await self._api(
            "POST",
            "/v1/auth/login",
            {"login": login, "password": password, "device": "camagent-conformance"},
        )
        return str(answer["session"])

    async def _api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        elsewhere: bool = False,
    ) -> Any:
        """The user API as the run's user, or (`elsewhere`) as the second organization's."""
        bearer = self.other_session if elsewhere else self.api_session
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            async with self.session.request(
                method, self.url + path, json=body, headers=headers
            ) as answer:
                text = await answer.text()
                if answer.status >= 400:
                    raise CloudSideError(f"{method} {path} answered {answer.status}: {text[:300]}")
                return json.loads(text) if text.strip() else None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise CloudSideError(f"{method} {path} failed: {error}") from None
        except ValueError:
            raise CloudSideError(f"{method} {path} answered something that is not JSON") from None

    def _need_api(self, action: str) -> None:
        if self.api_session is None:
            raise Unsupported(
                f"cannot {action}: give a hook for it, or a login (--login and "
                "--password-file) or --session for the cloud's user API"
            )

    async def add_device(self, device_id: str, password: str) -> None:
        if self.hooks.add_device:
            env = {"DEVICE_ID": device_id, "PASSWORD": password}
            await run_hook(self.hooks.add_device, env, "add-device")
            return
        self._need_api("add a camera")
        answer = await self._api(
            "POST",
            "/v1/cameras",
            {"device_id": device_id, "password": password, "name": "conformance"},
        )
        self.cameras[device_id] = str(answer["camera_id"])

    def can_add_elsewhere(self) -> None:
        """Unsupported unless a camera can be added in a second organization."""
        if self.hooks.add_device_elsewhere is None and self.other_session is None:
            raise Unsupported(
                "cannot add a camera in a second organization: give --add-device-other-org-cmd, "
                "or a user of another organization (--other-login and --other-password-file)"
            )

    async def add_device_elsewhere(self, device_id: str, password: str) -> None:
        """Add the camera in a second organization, as a MAC squatter would."""
        self.can_add_elsewhere()
        if self.hooks.add_device_elsewhere:
            env = {"DEVICE_ID": device_id, "PASSWORD": password}
            await run_hook(self.hooks.add_device_elsewhere, env, "add-device-other-org")
            return
        answer = await self._api(
            "POST",
            "/v1/cameras",
            {"device_id": device_id, "password": password, "name": "conformance squatter"},
            elsewhere=True,
        )
        self.other_cameras[device_id] = str(answer["camera_id"])

    async def camera_status(self, device_id: str) -> str | None:
        """The camera's `status` in the run's organization (`online`, `moved`, …); None
        without a user API session (the add hook's cloud may have no such API)."""
        if self.api_session is None:
            return None
        camera = await self._api("GET", f"/v1/cameras/{await self._camera_id(device_id)}")
        status = camera.get("status") if isinstance(camera, dict) else None
        return str(status) if status is not None else None

    async def revoke_device(self, device_id: str) -> None:
        if self.hooks.revoke_device:
            await run_hook(self.hooks.revoke_device, {"DEVICE_ID": device_id}, "revoke-device")
            return
        self._need_api("revoke a camera")
        camera_id = await self._camera_id(device_id)
        await self._api("DELETE", f"/v1/cameras/{camera_id}")
        self.cameras.pop(device_id, None)

    async def _camera_id(self, device_id: str) -> str:
        if device_id not in self.cameras:
            listing = await self._api("GET", "/v1/cameras")
            for camera in listing.get("cameras", []):
                if camera.get("device_id") == device_id:
                    self.cameras[device_id] = str(camera["camera_id"])
        if device_id not in self.cameras:
            raise CloudSideError(f"camera {device_id} is not in the account")
        return self.cameras[device_id]

    async def send_command(self, device_id: str, name: str) -> Any:
        """What the cloud reports the device answered (the hook's JSON stdout, if any)."""
        if self.hooks.send_command:
            env = {"DEVICE_ID": device_id, "COMMAND": name}
            out = await run_hook(self.hooks.send_command, env, "send-command")
            try:
                return json.loads(out) if out.strip() else None
            except ValueError:
                return None
        self._need_api("send a command")
        camera_id = await self._camera_id(device_id)
        return await self._api("POST", f"/v1/cameras/{camera_id}/commands", {"name": name})

    async def activate_code(self, code: str) -> None:
        if self.hooks.activate_code:
            await run_hook(self.hooks.activate_code, {"CODE": code}, "activate-code")
            return
        self._need_api("activate an NVR code")
        registrator = await self._api("POST", "/v1/registrators", {"name": "conformance NVR"})
        self.registrators.append(str(registrator["id"]))
        await self._api("POST", f"/v1/registrators/{registrator['id']}/activate", {"code": code})

    async def registration_token(self) -> str:
        if self.hooks.registration_token:
            out = await run_hook(self.hooks.registration_token, {}, "registration-token")
            token = out.strip()
            if not token:
                raise CloudSideError("the registration-token hook printed nothing")
            return token
        self._need_api("make a registration token")
        answer = await self._api("POST", "/v1/registrator-tokens", {"title": "conformance"})
        return str(answer["token"])

    async def overload(self) -> None:
        """Make the next poll answer 503 with Retry-After (the mock's test hook by default)."""
        if self.hooks.overload:
            await run_hook(self.hooks.overload, {}, "overload")
            return
        try:
            await self._api(
                "POST",
                "/v1/test/provisioning/fault",
                {"status": 503, "retry_after": 7, "count": 1},
            )
        except CloudSideError:
            raise Unsupported(
                "cannot make the cloud answer 429/503: give --overload-cmd (the mock does it "
                "with --test-hooks)"
            ) from None

    async def watch(self, device_id: str) -> Watching:
        """Make the cloud open a tunnel to the camera: a viewer of its live video (the
        mock's `GET /v1/cameras/{id}/live`), kept until the caller stops it."""
        if self.hooks.watch:
            return await WatchHook.start(self.hooks.watch, {"DEVICE_ID": device_id})
        if self.api_session is None:
            raise Unsupported(
                "cannot make the cloud open a tunnel: give --watch-cmd, or a login (--login "
                "and --password-file) or --session for the cloud's user API (its live view)"
            )
        path = f"/v1/cameras/{await self._camera_id(device_id)}/live"
        try:
            async with asyncio.timeout(VIEWER_CONNECT_S):
                ws = await self.session.ws_connect(
                    self.url + path,
                    headers={"Authorization": f"Bearer {self.api_session}"},
                    max_msg_size=VIEWER_MAX_MESSAGE,
                )
        except aiohttp.WSServerHandshakeError as error:
            if error.status in (404, 405):
                raise Unsupported(
                    f"cannot watch a camera: GET {path} answered {error.status} (the mock's "
                    "live view); give --watch-cmd"
                ) from None
            raise CloudSideError(f"GET {path} (live view) answered {error.status}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            why = str(error) or type(error).__name__
            raise CloudSideError(f"GET {path} (live view) failed: {why}") from None
        return LiveView(ws)

    async def clean_up(self) -> None:
        """Best effort: what the run added through the API goes again."""
        for camera_id in list(self.other_cameras.values()):
            try:
                await self._api("DELETE", f"/v1/cameras/{camera_id}", elsewhere=True)
            except CloudSideError as error:
                log.info("clean-up: %s", error)
        if self.api_session is None:
            return
        for camera_id in list(self.cameras.values()):
            try:
                await self._api("DELETE", f"/v1/cameras/{camera_id}")
            except CloudSideError as error:
                log.info("clean-up: %s", error)
        for registrator_id in self.registrators:
            try:
                await self._api("DELETE", f"/v1/registrators/{registrator_id}")
            except CloudSideError as error:
                log.info("clean-up: %s", error)
