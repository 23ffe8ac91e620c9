"""`camagent doctor`: check what the device needs, and say what to fix."""

from __future__ import annotations

import email.utils
import http.client
import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent import config as config_mod
from agent import identity
from agent.errors import CamagentError, DaemonUnavailable

CLOCK_WINDOW_S = 300
NET_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


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
    results += _network(config)
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


def _network(config: config_mod.Config) -> list[Check]:
    from agent.tls import client_context

    url = urlsplit(config.cloud.url)
    host, port = url.hostname or "", url.port or 443
    try:
        addresses = {str(a[4][0]) for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError as exc:
        return [
            Check(
                "dns",
                "fail",
                f"cannot resolve {host}: {exc}",
                "check the network and /etc/resolv.conf, or cloud.url",
            )
        ]
    checks = [Check("dns", "ok", f"{host} → {', '.join(sorted(addresses))}")]
    try:
        context = client_context(config.cloud.ca_file)
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=NET_TIMEOUT_S)
        sent = time.time()
        conn.request("GET", "/v1/keys")
        response = conn.getresponse()
        received = time.time()
        date = response.getheader("Date")
        conn.close()
    except ssl.SSLCertVerificationError as exc:
        return [
            *checks,
            Check(
                "tls",
                "fail",
                f"{host}:{port}: {exc.verify_message}",
                "set cloud.ca_file to the CA that signed the cloud's certificate",
            ),
        ]
    except (OSError, ssl.SSLError, http.client.HTTPException, CamagentError) as exc:
        return [
            *checks,
            Check(
                "tls",
                "fail",
                f"cannot reach {host}:{port}: {exc}",
                f"check the network path and firewall to the cloud (TCP {port} outbound)",
            ),
        ]
    checks.append(Check("tls", "ok", f"{host}:{port} answered over verified TLS"))
    checks.append(_clock(date, (sent + received) / 2))
    return checks


def _clock(date: str | None, local: float) -> Check:
    if not date:
        return Check("clock", "warn", "the cloud sent no Date header to compare with")
    try:
        offset = email.utils.parsedate_to_datetime(date).timestamp() - local
    except (TypeError, ValueError):
        return Check("clock", "warn", f"the cloud's Date header {date!r} is unreadable")
    detail = f"local clock is {offset:+.0f} s from the cloud's"
    if abs(offset) > CLOCK_WINDOW_S:
        return Check(
            "clock",
            "warn",
            detail + " (the agent corrects polls from the cloud's Date)",
            "enable NTP (systemd-timesyncd or chrony)",
        )
    return Check("clock", "ok", detail)


def _daemon(config: config_mod.Config) -> Check:
    from agent import control_socket

    try:
        status = control_socket.request(config.control_socket, "status", timeout=5)
    except DaemonUnavailable as exc:
        return Check("daemon", "warn", str(exc), "start it: systemctl start camagent")
    except CamagentError as exc:
        return Check("daemon", "fail", str(exc))
    return Check("daemon", "ok", f"running, state {status['state']}")


def format_results(results: list[Check]) -> str:
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for check in results:
        lines.append(f"[{mark[check.status]}] {check.name:<13} {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"       {'':<13} → {check.fix}")
    failed = sum(c.status == "fail" for c in results)
    lines.append("All checks passed." if not failed else f"{failed} check(s) failed.")
    return "\n".join(lines)
