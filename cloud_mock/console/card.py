"""The camera page's "Token for this camera": the camera's token, sealed for the password
the organization typed (docs/design.md §2.9), and a QR card of it that the camera reads
from its own video — the token alone, or WiFi and token together (the combined payload of
agent/qr/payloads.py, the same text `camagent qr make wifi --token-file` writes).

`POST /console/cameras/{id}/card {wifi: null | {ssid, password, security, hidden}}` →
`{sealed_token, kind: "token" | "combined", image: base64 PNG}`. The WiFi name and
password go into the picture and nowhere else: not stored, not logged, and the answer is
`Cache-Control: no-store`. Owners and those who may change cameras only, with the
session's CSRF token, like every change the console makes.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

from aiohttp import web

from agent.errors import QrPayloadError
from agent.provisioning.wire import seal_token
from agent.qr.payloads import SECURITIES, WifiNetwork, parse, token_payload, wifi_payload
from cloud_mock.api import ApiError, get_str, read_json_object
from cloud_mock.cameras import camera_json
from cloud_mock.console.auth import check_csrf, require_cookie_caller
from cloud_mock.keys import STORE

MAX_SSID = 32  # bytes of an 802.11 network name
MAX_WIFI_PASSWORD = 63  # characters of a WPA passphrase


def card_png(text: str) -> bytes:
    """The card as `camagent qr make … --png` draws it (qrcode, imported when used)."""
    import qrcode

    image = qrcode.make(
        text, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4
    )
    data = io.BytesIO()
    image.save(data, format="PNG")
    return data.getvalue()


def _network(wifi: Any) -> WifiNetwork | None:
    if wifi is None:
        return None
    if not isinstance(wifi, dict):
        raise ApiError(400, "wifi must be an object {ssid, password, security, hidden} or null")
    ssid = get_str(wifi, "ssid", max_len=MAX_SSID * 4)
    if len(ssid.encode()) > MAX_SSID:
        raise ApiError(400, f"the network name is longer than {MAX_SSID} bytes")
    password = get_str(
        wifi, "password", required=False, max_len=MAX_WIFI_PASSWORD, allow_empty=True
    )
    security = get_str(wifi, "security", required=False, max_len=8) or (
        "WPA" if password else "nopass"
    )
    if security.upper() not in SECURITIES:
        raise ApiError(400, f"security must be one of {', '.join(sorted(SECURITIES))}")
    security = SECURITIES[security.upper()]
    if security != "nopass" and not password:
        raise ApiError(400, f"a {security} network needs its password")
    hidden = wifi.get("hidden", False)
    if not isinstance(hidden, bool):
        raise ApiError(400, "hidden must be true or false")
    return WifiNetwork(ssid, password if security != "nopass" else "", security, hidden)


async def token_card(request: web.Request) -> web.Response:
    caller = require_cookie_caller(request)
    check_csrf(request, caller)
    if not caller.may_change():
        raise ApiError(403, f"role {caller.user.role!r} may look at cameras but not change them")
    camera = request.app[STORE].devices.get_camera(request.match_info["id"])
    if camera is None or camera.org != caller.user.org:
        raise ApiError(404, "no such camera")
    if camera.key is None or camera.token is None:
        status = camera_json(request.app, camera)["status"]
        raise ApiError(409, f"this camera's claim is closed ({status}): add it again")
    network = _network((await read_json_object(request)).get("wifi"))
    sealed = seal_token(camera.key, camera.device_id, camera.token)
    text = token_payload(sealed) if network is None else wifi_payload(network, token=sealed)
    kind = "token" if network is None else "combined"
    try:
        read_back = parse(text).type
    except QrPayloadError as exc:
        raise ApiError(400, f"cannot make this card: {exc}") from None
    if read_back != kind:
        raise ApiError(400, f"cannot make this card: it would read as {read_back}")
    png = await asyncio.to_thread(card_png, text)
    return web.json_response(
        {"sealed_token": sealed, "kind": kind, "image": base64.b64encode(png).decode()},
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/console/cameras/{id}/card", token_card)
