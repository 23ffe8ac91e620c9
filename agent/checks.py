"""Checks of what a device needs from its surroundings, each with a fix hint.

`camagent doctor` and the NVR's device-side checks (`camagent nvr checks`, also sent to
the cloud with an activation code) are both made of these.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config import Config
from agent.errors import CamagentError

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


def network_checks(config: Config, config_path: Path | None = None) -> list[Check]:
    from agent.tls import client_context

    where = f" in {config_path}" if config_path else ""
    ca_file = config.cloud.ca_file
    if ca_file and (problem := _unreadable(Path(ca_file))):
        return [
            Check(
                "tls",
                "fail",
                f"cannot read ca_file {ca_file}: {problem}",
                f"fix cloud.ca_file{where}, or the file's permission",
            )
        ]
    try:
        context = client_context(ca_file)
    except CamagentError as exc:
        return [Check("tls", "fail", str(exc), f"point cloud.ca_file{where} at a PEM bundle")]
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
                f"set cloud.ca_file{where} to the CA that signed the cloud's certificate",
            ),
        ]
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
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
    checks.append(clock_check(date, (sent + received) / 2))
    return checks


def _unreadable(path: Path) -> str | None:
    """Why `path` cannot be read by this user, or None."""
    from agent.file_access import permission_parts

    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "no such file"
    except PermissionError as exc:
        detail, fix = permission_parts(exc, path)
        return f"{detail.split(': ', 1)[1]}: {fix}"
    except OSError as exc:
        return exc.strerror or str(exc)


def clock_check(date: str | None, local: float) -> Check:
    if not date:
        return Check("clock", "warn", "the cloud sent no Date header to compare with")
    try:
        offset = email.utils.parsedate_to_datetime(date).timestamp() - local
    except (TypeError, ValueError):
        return Check("clock", "warn", f"the cloud's Date header {date!r} is unreadable")
    seconds = round(offset)
    if seconds == 0:  # "-0 s" reads as a fault; within half a second is "the same"
        detail = "local clock agrees with the cloud's (within 1 s)"
    else:
        behind_or_ahead = "behind" if seconds > 0 else "ahead of"  # offset: cloud - local
        detail = f"local clock is {abs(seconds)} s {behind_or_ahead} the cloud's"
    if abs(offset) > CLOCK_WINDOW_S:
        return Check(
            "clock",
            "warn",
            detail + " (the agent corrects polls from the cloud's Date)",
            "enable NTP (systemd-timesyncd or chrony)",
        )
    return Check("clock", "ok", detail)


def format_results(results: list[Check]) -> str:
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for check in results:
        lines.append(f"[{mark[check.status]}] {check.name:<13} {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"       {'':<13} → {check.fix}")
    lines.append(summary(results))
    return "\n".join(lines)


def summary(results: list[Check]) -> str:
    failed = sum(c.status == "fail" for c in results)
    warned = sum(c.status == "warn" for c in results)
    parts = []
    if failed:
        parts.append(f"{failed} check(s) failed")
    if warned:
        parts.append(f"{warned} warning{'s' if warned != 1 else ''}")
    return "All checks passed." if not parts else ", ".join(parts) + "."
