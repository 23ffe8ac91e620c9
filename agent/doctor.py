"""`camagent doctor`: check what the device needs, and say what to fix."""

from __future__ import annotations

import os
from pathlib import Path

from agent import config as config_mod
from agent import identity
from agent.checks import Check, format_results, network_checks
from agent.errors import CamagentError, DaemonUnavailable

__all__ = ["Check", "format_results", "run_checks"]


def run_checks(path: Path) -> list[Check]:
    try:
        config = config_mod.load(path)
    except CamagentError as exc:
        return [Check("config", "fail", str(exc), f"fix {path}, then run `camagent doctor` again")]
    results = [Check("config", "ok", f"{path} is valid")]
    try:
        device_id = identity.device_id(config)
        results.append(Check("device id", "ok", device_id))
    except CamagentError as exc:
        return [*results, Check("device id", "fail", str(exc), "set device.id in the config")]
    results += [_state(config, device_id), _trust(config)]
    results += network_checks(config)
    results.append(_daemon(config))
    return results


def _state(config: config_mod.Config, device_id: str) -> Check:
    from agent.token_store import TokenStore

    store = TokenStore(config.state_dir)
    try:
        record = store.load()
    except CamagentError as exc:
        return Check(
            "state",
            "fail",
            str(exc),
            "the daemon sets an unreadable state aside on start; or run `camagent reset`",
        )
    if not os.access(
        config.state_dir if config.state_dir.exists() else config.state_dir.parent, os.W_OK
    ):
        return Check(
            "state",
            "fail",
            f"{config.state_dir} is not writable",
            "run as root or the camagent user, or fix paths.state_dir",
        )
    has_key = bool(record.key) and record.device_id == device_id
    password = Path(config.device.password_file)
    if not has_key:
        try:
            identity.read_password(config)
        except CamagentError as exc:
            return Check("password", "fail", str(exc), "put the password from the label there")
    token = (
        "holds a token" if record.has_token and record.device_id == device_id else "no token yet"
    )
    key = "provisioning key derived" if has_key else f"password file {password} readable"
    return Check("state", "ok", f"{store.path}: {token}; {key}")


def _trust(config: config_mod.Config) -> Check:
    from agent.trust import configured_keys

    try:
        keys = configured_keys(config)
    except CamagentError as exc:
        return Check("trusted keys", "fail", str(exc), "point cloud.trust_keys at the cloud's key")
    if not keys:
        return Check(
            "trusted keys",
            "warn",
            "cloud.trust_keys is empty: keys are fetched from "
            "the cloud on first use (over verified TLS)",
            "pin the cloud's token-signing key in cloud.trust_keys",
        )
    return Check("trusted keys", "ok", f"{len(keys)} token-signing key(s) configured")


def _daemon(config: config_mod.Config) -> Check:
    from agent import control_socket

    try:
        status = control_socket.request(config.control_socket, "status", timeout=5)
    except DaemonUnavailable as exc:
        return Check("daemon", "warn", str(exc), "start it: systemctl start camagent")
    except CamagentError as exc:
        return Check("daemon", "fail", str(exc))
    return Check("daemon", "ok", f"running, state {status['state']}")
