"""`camagent doctor`: check what the device needs, and say what to fix.

Each failure gets the hint that fixes *it*: a permission problem names the path, its
owner and mode (and is never answered with `camagent reset`, which would lose the token
for nothing); commands in hints carry the `--config` that doctor was given, and its program
(agent/hints.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import config as config_mod
from agent import hints, identity
from agent.checks import Check, format_results, network_checks
from agent.errors import CamagentError, DaemonUnavailable
from agent.file_access import permission_message, permission_parts
from agent.status import password_hint

if TYPE_CHECKING:  # the probe's code is loaded only when doctor runs it
    from agent.video.rtsp_probe import RtspTarget, StreamProbe

__all__ = ["Check", "format_results", "no_token_hint", "run_checks"]


def camagent_command(path: Path, hint: str) -> str:
    """The registered hint `hint` (agent/hints.py) as a person types it, for this config
    and the program doctor runs as."""
    return hints.show(hint, hints.invocation_of(path, hints.current().profile))


def run_checks(path: Path) -> list[Check]:
    if path.exists() and not os.access(path, os.R_OK):
        return [_denied("config", path)]
    try:
        config = config_mod.load(path)
    except CamagentError as exc:
        again = camagent_command(path, "doctor")
        return [Check("config", "fail", str(exc), f"fix {path}, then run `{again}` again")]
    results = [Check("config", "ok", f"{path} is valid")]
    try:
        device_id = identity.device_id(config)
        results.append(Check("device id", "ok", device_id))
    except CamagentError as exc:
        return [*results, Check("device id", "fail", str(exc), f"set device.id in {path}")]
    results += [_state(config, device_id, path), _trust(config, path)]
    results += network_checks(config, path)
    results += _video(config, path)
    status, daemon_check = _daemon(config, path)
    results.append(daemon_check)
    if status is not None and (hint := no_token_hint(status)):
        results.append(
            Check(
                "provisioning",
                "warn",
                hint,
                f"compare {config.device.password_file} with the camera's label, "
                f"then `{camagent_command(path, 'poll-now')}`",
            )
        )
    return results


VIDEO_TIMEOUT_S = 5.0


def _video(config: config_mod.Config, path: Path) -> list[Check]:
    """One line per RTSP target: does it answer DESCRIBE, and can a browser play it."""
    from agent.video import rtsp_probe

    targets = rtsp_probe.configured_targets(config)
    if not targets:
        where = "no [[nvr.cameras]]" if config.device.kind == "nvr" else "[video] main is empty"
        return [Check("video", "ok", f"no video configured ({where})")]
    pairs = [(target.name, target.url) for target in targets]
    # All at once, so doctor waits one probe timeout however many cameras an NVR has.
    probes = asyncio.run(rtsp_probe.probe_all(pairs, timeout=VIDEO_TIMEOUT_S))
    return [_video_check(t, p, path) for t, p in zip(targets, probes, strict=True)]


def _video_check(target: RtspTarget, probe: StreamProbe, path: Path) -> Check:
    detail = f"{target.name}: {probe.detail}"
    if not probe.reachable:
        return Check("video", "fail", detail, _video_fix(target, probe.detail, path))
    if probe.codec is None:
        return Check("video", "warn", detail, f"point {target.key} in {path} at a video stream")
    if probe.codec != "H264":
        return Check(
            "video",
            "warn",
            f"{detail}: browsers cannot play {probe.codec}",
            "set the camera's stream to H.264 in its own video settings",
        )
    return Check("video", "ok", detail)


def _video_fix(target: RtspTarget, detail: str, path: Path) -> str:
    from agent.video.rtsp_probe import stream_address

    if detail.startswith("RTSP 401"):
        return (
            f"put the camera's user and password in {target.key} in {path} "
            "(rtsp://user:password@host/path; percent-encode @, : and / in them)"
        )
    if detail.startswith("RTSP "):
        return f"fix {target.key} in {path}: the camera's manual gives its stream URLs"
    address = stream_address(target.url)
    return (
        f"check that the camera's RTSP server answers at {address}, or fix {target.key} in {path}"
    )


def _denied(name: str, path: Path) -> Check:
    detail, fix = permission_parts(PermissionError(errno.EACCES, "Permission denied", str(path)))
    return Check(name, "fail", detail, fix)


def _unreachable(path: Path) -> Path | None:
    """`path`, or the directory holding it, when this user may not read it; else None."""
    directory = path.parent
    try:
        os.stat(path)
    except PermissionError:  # the directory cannot be searched
        return directory
    except OSError:  # missing: fine, unless the directory itself is out of reach
        reachable = not directory.exists() or os.access(directory, os.R_OK | os.X_OK)
        return None if reachable else directory
    return None if os.access(path, os.R_OK) else path


def _state(config: config_mod.Config, device_id: str, path: Path) -> Check:
    from agent.token_store import TokenStore

    store = TokenStore(config.state_dir)
    if (blocked := _unreachable(store.path)) is not None:
        return _denied("state", blocked)
    try:
        record = store.load()
    except CamagentError as exc:
        # The content itself is unreadable (damaged, another key): only then is setting
        # it aside, which the daemon does on start, the way out.
        return Check(
            "state",
            "fail",
            str(exc),
            "the daemon sets an unreadable state file aside on start (the token in it is "
            f"lost, and the device provisions again); or `{camagent_command(path, 'reset')}`",
        )
    writable = config.state_dir if config.state_dir.exists() else config.state_dir.parent
    if not os.access(writable, os.W_OK):
        return _denied("state", writable)
    has_key = bool(record.key) and record.device_id == device_id
    password = Path(config.device.password_file)
    if not has_key:
        try:
            identity.read_password(config)
        except CamagentError as exc:
            return Check("password", "fail", str(exc), _password_fix(password))
    token = (
        "holds a token" if record.has_token and record.device_id == device_id else "no token yet"
    )
    key = "provisioning key derived" if has_key else f"password file {password} readable"
    return Check("state", "ok", f"{store.path}: {token}; {key}")


def _password_fix(password: Path) -> str:
    if (blocked := _unreachable(password)) is not None:
        denied = PermissionError(errno.EACCES, "Permission denied", str(blocked))
        return permission_message(denied)
    return f"write the password from the camera's label into {password}"


def _trust(config: config_mod.Config, path: Path) -> Check:
    from agent.trust import configured_keys

    try:
        keys = configured_keys(config)
    except CamagentError as exc:
        return Check(
            "trusted keys", "fail", str(exc), f"point cloud.trust_keys in {path} at the cloud's key"
        )
    if not keys:
        return Check(
            "trusted keys",
            "warn",
            "cloud.trust_keys is empty: keys are fetched from "
            "the cloud on first use (over verified TLS)",
            f"pin the cloud's token-signing key in cloud.trust_keys ({path})",
        )
    return Check("trusted keys", "ok", f"{len(keys)} token-signing key(s) configured")


def _daemon(config: config_mod.Config, path: Path) -> tuple[dict[str, Any] | None, Check]:
    from agent import control_socket

    try:
        status = control_socket.request(config.control_socket, "status", timeout=5)
    except DaemonUnavailable as exc:
        if path == Path(config_mod.DEFAULT_CONFIG_PATH):
            start = "systemctl start camagent"
        else:
            start = camagent_command(path, "run")
        return None, Check("daemon", "warn", str(exc), f"start it: {start}")
    except CamagentError as exc:
        return None, Check("daemon", "fail", str(exc))
    return status, Check("daemon", "ok", f"running, state {status['state']}")


def no_token_hint(status: dict[str, Any]) -> str | None:
    """The daemon's hint that the fast phase ended with no token though the cloud
    answered each poll (most often: a wrong label password in password_file).

    A daemon with agent.status gives it as `provisioning.hint`; for one that does not,
    it is worked out from the fields every status has (the fast phase is over, no token,
    and the last poll was answered "no token yet") — which sees only the last poll.
    """
    prov = status.get("provisioning") or {}
    if prov.get("hint"):
        return str(prov["hint"])
    if "hint" in prov or status.get("token", {}).get("present"):
        return None
    if prov.get("phase") == "slow" and prov.get("last_result") == "no token yet":
        polls = int(prov.get("last_attempt") or prov.get("attempts") or 0)
        return password_hint(polls)
    return None
