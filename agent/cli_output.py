"""What `camagent status` and `nvr code` print for people (scripts use --json)."""

from __future__ import annotations

import time
from typing import Any


def format_status(status: dict[str, Any]) -> str:
    token = status["token"]
    prov = status["provisioning"]
    lines = [
        f"camagent {status['version']} — {status['kind']} {status['device_id']}"
        + (f" ({status['name']})" if status.get("name") else ""),
        f"  state         {status['state']}"
        + ("" if status.get("daemon") else "  (daemon not running)"),
        f"  cloud         {status['cloud']['url']}",
    ]
    since = status["cloud"].get("connected_since")
    if since:
        lines.append(f"  connected     since {_clock(since)}")
    if token.get("present"):
        issued = _clock(token["iat"]) if "iat" in token else "?"
        org, jti = token.get("org", "?"), token.get("jti", "?")
        lines.append(f"  token         org {org}, id {jti}, issued {issued}")
    else:
        lines.append("  token         none")
    if prov["phase"] == "off":
        lines.append("  provisioning  off" + (" (token held)" if token.get("present") else ""))
    else:
        nxt = prov["next_poll_in"]
        lines.append(
            f"  provisioning  {prov['phase']} phase, {prov['attempts']} request(s) so far, "
            f"next in {nxt:.1f} s"
        )
    if status.get("activation"):
        code = status["activation"]
        lines.append(
            f"  activation    code {code['code']}, valid until {_clock(code['expires_at'])}"
        )
        lines.append(f"                {code['activation_url']}")
    if prov.get("last_result"):
        lines.append(f"  last poll     {prov['last_result']} at {_clock(prov['last_at'])}")
    from agent.doctor import no_token_hint

    if hint := no_token_hint(status):
        lines.append(f"  hint          {hint}")
    lines.extend(_format_local_api(status.get("local_api")))
    return "\n".join(lines)


def _format_local_api(local: dict[str, Any] | None) -> list[str]:
    if not local:  # the daemon is not running: nothing listens
        return []
    if not local.get("enabled"):
        return ["  local API     off"]
    if local.get("error") and not local.get("port"):
        return [f"  local API     {local['error']}"]
    if not local.get("port"):
        return ["  local API     starting"]
    where = f"HTTPS on {local['listen']} port {local['port']}"
    mdns = f", on mDNS as {local['mdns']!r}" if local.get("mdns") else ""
    return [f"  local API     {where}{mdns}", f"  fingerprint   {local['fp']}"]


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def format_activation(activation: dict[str, Any]) -> str:
    from agent.qr.terminal import render

    try:
        qr = render(activation["activation_url"])
    except ImportError:  # qrcode is recommended, not required, on small images
        qr = "(install python3-qrcode to see the URL as a QR code)"
    return "\n".join(
        [
            f"Activation code:  {activation['code']}",
            f"Valid until:      {_clock(activation['expires_at'])}",
            "Enter it in the cloud (Registrators → Add registrator → Connect), or open:",
            f"  {activation['activation_url']}",
            "",
            qr,
        ]
    )
