"""The web console, served by the mock at `/` (docs/design.md §11, §12): log in, cameras
(live, those an NVR synced included, each with its thumbnail; "Scan label" reads a
camera's label with the phone's camera; a page each with its live video, its archive,
Reset, and a waiting camera's password correction), registrators (the 8-step wizard,
registration tokens, Sync, a page each with its settings, its cameras and whether each
answers, and Delete), a page for each camera of an NVR (live video and archive, as a
camera's), sessions. Usable on a phone (390 px wide) and a desktop.

How it fits on the JSON API, so that no business rule exists twice:
- Pages are rendered on the server (Jinja2 templates, autoescaped: pages.py) from the
  same store and the same JSON shapes the API answers with; console.js (static, no
  build step, no CDN) adds the live and interactive parts, scan.js the label scanner
  (zxing-wasm, fetched by vendor.sh into static/vendor/ and served from there),
  player.js the camera page's live video (the API's live WebSocket fed into a <video>
  through Media Source Extensions), archive.js its archive (the recording setting, the
  last 24 hours' recordings as a timeline and a list, and the API's HLS playlists played
  natively, or by hls.js, vendored like zxing-wasm, in browsers without HLS).
- Every change the browser makes goes to `/console/api/v1/...`: a same-origin gateway
  (gateway.py) that takes the session from the cookie, insists on the CSRF token for
  anything but GET (and on the console's own Origin for a WebSocket upgrade), and then
  runs the very handler of `/v1/...` with the session as its Bearer credential.
  Permissions, validation and errors are the API's own.
- Login and the session-limit dialog call users.login_flow / users.end_session_as, the
  functions behind POST /v1/auth/login and DELETE /v1/sessions/{id}.
- Live status: `/console/events` (Server-Sent Events) looks at the org's cameras and
  registrators twice a second and sends a snapshot whenever one changed.

Browser protections (security.py): the session cookie is `__Host-`, HttpOnly, Secure,
SameSite=Strict, and holds the session secret itself (checked with
users.caller_from_secret, so idle expiry and ending sessions apply); the CSRF token is
an HMAC of the session id under a per-process key (before login: a double-submit token);
a strict CSP (no inline script or style; data: images for the captcha; WebAssembly
compiled only on the cameras page, for the scanner; blob: media only on the pages of a
camera and of an NVR camera, for the live view's MediaSource and hls.js's; hls.js runs
without its blob: worker, so no script source is added),
frame-ancestors 'none' and X-Frame-Options DENY, Referrer-Policy no-referrer.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from cloud_mock.console import card, gateway, live, pages, views
from cloud_mock.console.security import CONSOLE_KEY, add_security_headers


def setup(app: web.Application) -> None:
    """Adds the console's routes, static files and response headers to `app`."""
    app[CONSOLE_KEY] = secrets.token_bytes(32)
    app.on_response_prepare.append(add_security_headers)
    pages.setup(app)
    views.add_routes(app)
    card.add_routes(app)
    gateway.add_routes(app)
    live.setup(app)
