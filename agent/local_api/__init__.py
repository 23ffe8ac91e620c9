"""The device's local HTTPS API and its mDNS announcement (docs/design.md §5).

Configuration, `[local_api]` in agent.toml:

    enabled = true          # serve the API at all
    listen = "0.0.0.0"
    port = 9443             # 0: any free port; `camagent status` shows the real one
    mdns = true             # announce _camagent._tcp.local. (loads python-zeroconf)
    lockout_after = 5       # wrong passwords in a row from one address before it waits
    lockout_base_s = 30     # its first wait; doubled for each further wrong one, max 1 h

Started after READY=1. The certificate (ECDSA P-256, self-signed) is made on the first
start and kept as `local-api.pem` / `local-api.key` (0600) in the state directory; its
`fp` is the lower-case hex SHA-256 of the DER certificate, announced in mDNS TXT and
shown by `camagent status`. Clients pin it instead of trusting a CA.

Endpoints (JSON in, JSON out):

    GET  /v1/info                 no auth: {id, kind, state, ver, fp, name, model}
    POST /v1/token {token}        forced token change (verified like any token)
    POST /v1/reset                forget the token, provision from the first step
    POST /v1/poll-now             restart the fast phase (409 while holding a token)
    POST /v1/wifi {ssid, password, security: WPA|SAE|WEP|nopass, hidden}
    POST /v1/cloud-registration {token}   NVR only: link with a registration token

Every POST needs HTTP Digest (RFC 7616): realm "camagent", algorithm=SHA-256,
qop=auth, user `admin`, the device password (`device.password_file`). Nonces last
300 s (then `stale=true`), a nonce-count is never accepted twice. Answers: 200
`{ok: true, state, …}`; errors `{error, message}` with 400 (bad body), 401 (challenge;
`tries_left`), 404, 405, 409 (refused in this state), 413 (body over 16 KiB), 415 (not
application/json), 408 (body slower than 10 s), 429 + Retry-After (this address waits: no
password is checked), 503 (no password file). aiohttp's own refusals (a request it cannot
parse) are JSON too. Wrong passwords are throttled per client address, with a global
slow-down under a many-address attack and never a device-wide lock (lockout.py); the
bounded table survives restarts (`local-api-lockout.json` in the state directory).

Resource limits (listener.py, connection.py): 32 connections in all, 8 per client
address (more are closed at once), 10 s for the TLS handshake, 10 s for the first
request's headers, 10 s keep-alive, 10 s for a body; no connection is accepted while
fewer than 64 descriptors are left under RLIMIT_NOFILE (the unit sets LimitNOFILE=4096).
Refusals are logged once a minute with a count; `camagent status --json` shows them under
`local_api.connections` (open, refused, dropped, handshakes_failed, accept_paused).
"""
