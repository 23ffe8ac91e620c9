"""`camagent demo`: the whole story on one machine, narrated.

A mock cloud, a camera's own RTSP server (GStreamer's, showing a test picture with the
time drawn in) and a camera agent start as real processes in a temporary directory, talk
over real TLS on loopback, and the demo plays the owner and the installer: it adds the
camera in the cloud, watches it connect and sends its picture, presses reset, watches it
come back, deletes it, adds it again, and leaves it online to be watched in the console.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from agent import hints
from agent.errors import CamagentError
from cloud_mock import sandbox, test_camera
from cloud_mock.video.viewer import watch_sync

DEVICE_ID = "02:ca:fe:00:00:01"
PASSWORD = "label-pass-4721"
FAST_INTERVAL = 5.0
LONG_POLL = 4.0
POLLS_BEFORE_ADDING = 1


class Narrator:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.2f} s] {text}", flush=True)


def run(once: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="camagent-demo-"))
    cloud: sandbox.Cloud | None = None
    agent: sandbox.Agent | None = None
    camera: test_camera.TestCamera | None = None
    say = Narrator().say
    succeeded = False  # else the directory and its logs are kept, and named
    # Ctrl-C and SIGTERM both end the demo cleanly, children included. SIGINT is set
    # explicitly: started from a background job (`nohup`, `&` in a script) Python inherits
    # it ignored, and a `kill -INT` would then leave the demo running.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        say(f"Starting the mock cloud in {workdir}")
        cloud = sandbox.start_cloud(workdir / "cloud")
        say(f"Cloud is up at {cloud.url} (TLS with its own CA: {cloud.ca_file})")
        camera = _start_camera_stream(say)
        config = sandbox.write_agent_config(
            workdir / "camera",
            cloud,
            device_id=DEVICE_ID,
            password=PASSWORD,
            fast_interval=FAST_INTERVAL,
            long_poll=LONG_POLL,
            slow_interval=120,
            extra=_video_config(camera),
        )
        say(f"Unboxing camera {DEVICE_ID}; the password on its label is {PASSWORD!r}")
        agent = sandbox.start_agent(config)
        say(
            f"camagent is running on the camera: no token, so it polls the cloud "
            f"(shrunk for the demo: every {FAST_INTERVAL:g} s, each poll waiting up to "
            f"{LONG_POLL:g} s for a token)"
        )
        _watch_polls(agent, say, POLLS_BEFORE_ADDING)

        session = cloud.login()
        say("The owner logs in to the cloud as 'admin' and adds the camera: MAC + password")
        camera_id = _add_camera(cloud, session, agent, say)
        say(f"The cloud shows the camera as {_camera_status(cloud, session, camera_id)!r}")
        if once:
            say("Done (--once).")
            succeeded = True
            return 0
        _watch_live(cloud, session, camera_id, camera, say)

        say("The installer presses reset: the camera forgets its token")
        pressed = time.monotonic()
        agent.command("reset")
        agent.wait_for_state("connected")
        say(
            f"It provisioned again from the first step and is CONNECTED "
            f"({(time.monotonic() - pressed) * 1000:.0f} ms after the reset)"
        )

        say("The owner deletes the camera: the cloud revokes its token (close code 4401)")
        cloud.request("DELETE", f"/v1/cameras/{camera_id}", session=session)
        agent.wait_for_state("provisioning")
        say("The camera forgot the revoked token and is provisioning again, from its fast phase")

        say("The owner adds it again")
        camera_id = _add_camera(cloud, session, agent, say)
        print()
        print(
            closing_hint(
                cloud.url,
                cloud.admin_password,
                config,
                camagent_command(),
                camera is not None,
                ca_file=cloud.ca_file,
            )
        )
        print("Press Ctrl-C to stop.", flush=True)
        _keep_fast(agent, cloud, say)
        raise CamagentError(
            "a demo process exited unexpectedly; its logs are kept in " + str(workdir)
        )
    except KeyboardInterrupt:
        print("\nStopping the demo.")
        succeeded = True
        return 0
    finally:
        if agent is not None:
            agent.stop()
        if cloud is not None:
            cloud.stop()
        if camera is not None:
            camera.stop()
        if succeeded:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(
                f"camagent demo: something failed; its files and logs are kept in {workdir} "
                f"(remove it when done: rm -r {shlex.quote(str(workdir))})",
                file=sys.stderr,
                flush=True,
            )


def _keep_fast(
    agent: sandbox.Agent, cloud: sandbox.Cloud, say: Any, check_every: float = 0.5
) -> None:
    """Until a demo process exits: whenever the camera, without a token (deleted in the
    console), falls back to its slow phase, press poll-now on its daemon, so that adding
    it again in the console brings it online within seconds, as the console says."""
    while agent.process.poll() is None and cloud.process.poll() is None:
        try:
            status = agent.status()
        except CamagentError:
            status = {}
        if status.get("state") == "provisioning" and (
            (status.get("provisioning") or {}).get("phase") == "slow"
        ):
            try:
                agent.command("poll_now")
            except CamagentError:
                pass
            else:
                poll_now = hints.show("poll-now", _invocation(agent.config_path))
                say(
                    "The camera has no token and fell back to its slow phase: the demo "
                    f"pressed poll-now (`{poll_now}`) to keep it polling fast"
                )
        time.sleep(check_every)


def _start_camera_stream(say: Any) -> test_camera.TestCamera | None:
    """The camera's own RTSP server; without GStreamer the demo goes on without video."""
    why_not = test_camera.available()
    if why_not is None:
        try:
            camera = test_camera.start_test_camera()
        except test_camera.TestCameraError as exc:
            why_not = str(exc)
        else:
            say(
                f"The camera's own RTSP server is up on 127.0.0.1:{camera.port} "
                "(a test picture with the time drawn in; 640x360 and 320x180, H.264)"
            )
            return camera
    say(f"No camera picture in this demo: {why_not} (scripts/setup.sh installs it)")
    return None


def _video_config(camera: test_camera.TestCamera | None) -> str:
    if camera is None:
        return ""
    return f'[video]\nmain = "{camera.main}"\nsub = "{camera.sub}"\n'


def _add_camera(cloud: sandbox.Cloud, session: str, agent: sandbox.Agent, say: Any) -> str:
    """Add the camera as the owner does (the ID typed as on the label) and wait for it."""
    added = time.monotonic()
    status, body = cloud.request(
        "POST",
        "/v1/cameras",
        {
            "device_id": DEVICE_ID.upper().replace(":", "-"),
            "password": PASSWORD,
            "name": "Front door",
        },
        session=session,
    )
    if status != 201:
        raise CamagentError(f"adding the camera failed: HTTP {status} {body}")
    say("  the cloud stored (device, password-derived key, signed token) and woke the poll")
    agent.wait_for_state("connected")
    connected_ms = (time.monotonic() - added) * 1000
    say(
        f"Token received in the waiting poll, verified, stored encrypted: CONNECTED "
        f"{connected_ms:.0f} ms after the camera was added"
    )
    return str(body["camera_id"])


def _watch_live(
    cloud: sandbox.Cloud,
    session: str,
    camera_id: str,
    camera: test_camera.TestCamera | None,
    say: Any,
) -> None:
    """The owner opens the camera's page: the picture, through the camera's tunnel."""
    if camera is None:
        return
    say("The owner opens the camera's page: the cloud asks the camera for a video tunnel")
    seen = watch_sync(
        f"{cloud.url}/v1/cameras/{camera_id}/live", session, cloud.ssl_context(), fragments=1
    )
    if seen.first_fragment_s is None or seen.init is None:
        say(f"  no picture: {seen.last_status.get('message', 'no answer')}")
        return
    say(
        f"  LIVE: the first picture arrived {seen.first_fragment_s * 1000:.0f} ms after the "
        f"page asked ({seen.init['width']}x{seen.init['height']} H.264, the camera's own "
        "RTSP relayed by camagent, repackaged by the cloud for the browser)"
    )


def camagent_command() -> list[str]:
    """How to run camagent as this demo does (agent/hints.py): `camagent` only if that is
    on PATH and is this installation; else its own path (e.g. .venv/bin/camagent), else
    this Python with `-m agent`."""
    return list(hints.program())


def _invocation(config: Path, camagent: list[str] | None = None) -> hints.Invocation:
    return hints.Invocation(tuple(camagent or camagent_command()), str(config))


def browser_warning(ca_file: Path | str) -> str:
    """What a browser says of the mock cloud's certificate, and how to trust its CA."""
    ca = shlex.quote(str(ca_file))
    return (
        "a browser warns that the certificate is not trusted (ERR_CERT_AUTHORITY_INVALID): "
        f"the mock cloud has its own CA, {ca_file}. Trust it for Chromium/Chrome on Linux "
        f"with `certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n camagent-mock -i {ca}` "
        "(libnss3-tools; restart the browser), for Firefox in Settings → Certificates → "
        "Import, elsewhere in the OS's trust store (macOS: Keychain Access; Windows: "
        "certutil -addstore -user Root); or accept the warning for this page"
    )


def closing_hint(
    url: str,
    admin_password: str,
    config: Path,
    camagent: list[str],
    video: bool = True,
    ca_file: Path | None = None,
) -> str:
    status = hints.show("status", _invocation(config, camagent))
    watch = (
        "console → Cameras → Front door: its live picture"
        if video
        else "console → Cameras → Front door (no picture: GStreamer's RTSP server is missing)"
    )
    return "\n".join(
        [
            "The demo keeps running; the camera is online.",
            f"  console:        {url}/  (log in as admin, password {admin_password})",
            f"  watch it:       {watch}",
            f"  camera status:  {status}",
            "  add it again:   delete it in the console and add it again: online within "
            f"{FAST_INTERVAL + LONG_POLL:g} s (without a token a camera falls back to its "
            "slow phase; the demo presses poll-now to keep it fast)",
            *([f"  browser:        {browser_warning(ca_file)}"] if ca_file is not None else []),
        ]
    )


def _watch_polls(agent: sandbox.Agent, say: Any, count: int) -> None:
    """Narrate polls as they start and end; return while poll `count + 1` is waiting."""
    started = finished = 0
    while True:
        prov = agent.status()["provisioning"]
        if prov.get("last_attempt", 0) > finished:
            finished = prov["last_attempt"]
            say(f"  cloud → camera: poll {finished}: {prov['last_result']}")
        if prov["attempts"] > started:
            started = prov["attempts"]
            say(f"  camera → cloud: poll {started} (signed with its password; waits for a token)")
            if started > count:
                return
        time.sleep(0.05)


def _camera_status(cloud: sandbox.Cloud, session: str, camera_id: str) -> str:
    deadline = time.monotonic() + 5
    status = "?"
    while time.monotonic() < deadline:
        _, body = cloud.request("GET", f"/v1/cameras/{camera_id}", session=session)
        status = body.get("status", "?") if isinstance(body, dict) else "?"
        if status == "online":
            break
        time.sleep(0.02)
    return str(status)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(run())
