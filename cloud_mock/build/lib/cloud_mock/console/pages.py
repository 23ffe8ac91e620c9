"""The console's HTML: pure functions from data to markup (every value escaped).

Pages are rendered on the server with their current data; console.js then adds the
live parts (status stream, forms that call the JSON API, the wizard's steps).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from cloud_mock.users import ROLES_THAT_CHANGE

NAV = (("cameras", "/cameras", "Cameras"), ("registrators", "/registrators", "Registrators"))
NAV_END = (("sessions", "/sessions", "Sessions"),)
STATIC = "/console/static"


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def when(at: float | None) -> str:
    """A mock-clock time as the page shows it (console.js formats the same way)."""
    if at is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


@dataclass(frozen=True)
class Viewer:
    """Who a page is rendered for."""

    login: str
    org: str
    role: str
    csrf: str

    @property
    def may_change(self) -> bool:
        """Viewers only look (cloud_mock.users.Caller.may_change): their pages leave out
        the buttons the API would refuse anyway."""
        return self.role in ROLES_THAT_CHANGE


def layout(title: str, page: str, body: str, viewer: Viewer | None, csrf: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{e(csrf)}">
<title>{e(title)} · camagent cloud</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{STATIC}/console.css">
<script src="{STATIC}/console.js" defer></script>
</head>
<body data-page="{e(page)}" data-may-change="{_yes(viewer is not None and viewer.may_change)}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/">camagent cloud</a>
{_nav(page, viewer)}
</header>
<main id="main" tabindex="-1">
{body}
</main>
</body>
</html>
"""


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _nav(page: str, viewer: Viewer | None) -> str:
    if viewer is None:
        return ""

    def links(items: Iterable[tuple[str, str, str]]) -> str:
        current = ' aria-current="page"'
        return "".join(
            f'<li><a href="{href}"{current if key == page else ""}>{label}</a></li>'
            for key, href, label in items
        )

    return f"""<nav aria-label="Main"><ul>{links(NAV)}</ul></nav>
<div class="who">
<ul class="nav-end">{links(NAV_END)}</ul>
<span class="user">{e(viewer.login)} · {e(viewer.org)}</span>
<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{e(viewer.csrf)}">
<button type="submit" class="link">Log out</button>
</form>
</div>"""


# --- login -------------------------------------------------------------------------------


def login_page(csrf: str, next_path: str) -> str:
    body = f"""<div class="narrow card">
<h1>Log in</h1>
<form id="login-form" method="post" action="/console/login" data-next="{e(next_path)}" novalidate>
<label for="login">Login</label>
<input id="login" name="login" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<div id="captcha" class="captcha" hidden>
<img id="captcha-image" alt="Captcha: type the characters in this picture" width="160" height="60">
<button type="button" id="captcha-refresh" class="secondary">Refresh captcha</button>
<label for="captcha-answer">Characters in the picture</label>
<input id="captcha-answer" name="captcha_answer" autocomplete="off" autocapitalize="off"
 spellcheck="false">
<p class="hint" id="captcha-hint" role="status"></p>
</div>
<p id="login-error" class="error" role="alert"></p>
<button type="submit" class="primary">Log in</button>
</form>
</div>
<dialog id="sessions-dialog" aria-labelledby="sessions-title" aria-describedby="sessions-text">
<h2 id="sessions-title">Too many sessions</h2>
<p id="sessions-text"></p>
<p class="warning">Work not saved in the session you end may be lost.</p>
<table>
<caption class="sr-only">Your open sessions, newest first</caption>
<thead><tr><th scope="col">Device</th><th scope="col">Software</th>
<th scope="col">Started</th><th scope="col">Last activity</th>
<th scope="col"><span class="sr-only">Action</span></th></tr></thead>
<tbody id="sessions-rows"></tbody>
</table>
<p id="sessions-error" class="error" role="alert"></p>
<div class="actions">
<button type="button" id="sessions-cancel" class="secondary">Cancel</button>
</div>
</dialog>"""
    return layout("Log in", "login", body, None, csrf)


# --- cameras ------------------------------------------------------------------------------


def _status(status: str) -> str:
    return f'<span class="status status-{e(status)}">{e(status)}</span>'


def camera_row(camera: Mapping[str, Any], may_change: bool) -> str:
    cid = e(camera["camera_id"])
    delete = (
        f'<button type="button" class="danger" data-delete-camera="{cid}" '
        f'data-name="{e(camera["name"])}">Delete</button>'
        if may_change
        else ""
    )
    return f"""<tr data-camera-id="{cid}" data-key="{cid}">
<td><a href="/cameras/{cid}">{e(camera["name"])}</a></td>
<td><code>{e(camera["device_id"])}</code></td>
<td data-col="status">{_status(camera["status"])}</td>
<td data-col="last-seen">{e(when(camera["last_seen"]))}</td>
<td class="row-actions">{delete}</td>
</tr>"""


def _add_camera_button() -> str:
    return """<button type="button" id="add-camera-toggle" class="primary" aria-expanded="false"
 aria-controls="add-camera">Add camera</button>"""


def _add_camera_form() -> str:
    return """<section id="add-camera" class="card" hidden aria-labelledby="add-camera-title">
<h2 id="add-camera-title">Add a camera</h2>
<p class="hint">Type the MAC address (or the camera ID) and the password printed on the
camera's label. The camera connects by itself within seconds.</p>
<form id="add-camera-form" class="grid-form" novalidate>
<label for="cam-device">MAC or camera ID</label>
<input id="cam-device" name="device_id" required autocomplete="off" spellcheck="false"
 placeholder="aa:bb:cc:dd:ee:ff">
<label for="cam-password">Device password</label>
<input id="cam-password" name="password" type="password" required autocomplete="new-password">
<label for="cam-name">Name</label>
<input id="cam-name" name="name" autocomplete="off" placeholder="Front door">
<div class="actions">
<button type="submit" class="primary">Add</button>
<button type="button" class="secondary" id="add-camera-cancel">Cancel</button>
</div>
<p id="add-camera-error" class="error" role="alert"></p>
</form>
</section>"""


def _look_only(viewer: Viewer, what: str) -> str:
    return (
        f'<p class="hint">Your role ({e(viewer.role)}) lets you look at {what}, '
        "not change them.</p>"
    )


def cameras_page(viewer: Viewer, cameras: Sequence[Mapping[str, Any]]) -> str:
    rows = "\n".join(camera_row(c, viewer.may_change) for c in cameras)
    body = f"""<div class="heading-row">
<h1>Cameras</h1>
{_add_camera_button() if viewer.may_change else ""}
</div>
{_add_camera_form() if viewer.may_change else _look_only(viewer, "cameras")}
<table class="list" id="cameras-table">
<caption class="sr-only">Cameras of {e(viewer.org)}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">ID</th><th scope="col">Status</th>
<th scope="col">Last seen</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody id="camera-rows">
{rows}
</tbody>
</table>
<p id="no-cameras" class="empty"{"" if not cameras else " hidden"}>No cameras yet: add one.</p>
<p id="live" class="muted" role="status" aria-live="polite"></p>"""
    return layout("Cameras", "cameras", body, viewer, viewer.csrf)


POLL_RESULTS = {
    "token": "token delivered",
    "none": "no token yet",
    "unknown": "no token (camera not added yet)",
    "bad_proof": "refused: wrong device password",
    "replay": "refused: nonce seen before",
    "clock_skew": "refused: device clock is off",
    "abandoned": "device gave up waiting",
    "fault": "injected fault (test)",
    "malformed": "malformed request",
}


def poll_result(result: str) -> str:
    return POLL_RESULTS.get(result, result)


def _delete_camera_button(camera: Mapping[str, Any]) -> str:
    return (
        f'<button type="button" class="danger" data-delete-camera="{e(camera["camera_id"])}" '
        f'data-name="{e(camera["name"])}" data-then="/cameras">Delete</button>'
    )


def camera_page(
    viewer: Viewer, camera: Mapping[str, Any], polls: Sequence[Mapping[str, Any]]
) -> str:
    history = "\n".join(
        f"<tr><td>{e(when(p['at']))}</td><td>{e(poll_result(p['result']))}</td>"
        f"<td>{e(p['wait'])} s</td><td>{e(p['held_s'])} s</td></tr>"
        for p in reversed(polls)
    )
    empty = "" if polls else '<p class="empty">No provisioning requests seen yet.</p>'
    body = f"""<p class="crumbs"><a href="/cameras">Cameras</a> &rsaquo; {e(camera["name"])}</p>
<div class="heading-row">
<h1>{e(camera["name"])}</h1>
{_delete_camera_button(camera) if viewer.may_change else ""}
</div>
<dl class="facts" data-camera-id="{e(camera["camera_id"])}">
<dt>Camera ID</dt><dd><code>{e(camera["device_id"])}</code></dd>
<dt>Status</dt><dd data-col="status">{_status(camera["status"])}</dd>
<dt>Last seen</dt><dd data-col="last-seen">{e(when(camera["last_seen"]))}</dd>
<dt>Added</dt><dd>{e(when(camera["created"]))}</dd>
</dl>
<p id="live" class="muted" role="status" aria-live="polite"></p>
<h2>Provisioning history</h2>
<p class="hint">Requests the camera made to the provisioning service, newest first.</p>
<table class="list" id="polls">
<caption class="sr-only">Provisioning requests of {e(camera["device_id"])}</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Result</th><th scope="col">Wait</th>
<th scope="col">Held</th></tr></thead>
<tbody>
{history}
</tbody>
</table>
{empty}"""
    return layout(str(camera["name"]), "camera", body, viewer, viewer.csrf)


# --- registrators --------------------------------------------------------------------------


def _camera_names(registrator: Mapping[str, Any]) -> str:
    cameras = registrator.get("cameras") or []
    if not cameras:
        return '<span class="muted">none synced</span>'
    return '<ul class="inline">' + "".join(f"<li>{e(c['name'])}</li>" for c in cameras) + "</ul>"


def registrator_row(registrator: Mapping[str, Any], may_change: bool) -> str:
    rid = e(registrator["id"])
    sync = (
        f'<button type="button" class="secondary" data-sync="{rid}" '
        f'aria-label="Sync {e(registrator["name"])}">Sync</button>'
        if may_change
        else ""
    )
    if may_change and registrator["device_id"] is None:
        sync = (
            f'<a class="button secondary" data-continue href="/registrators/new?registrator={rid}"'
            f' aria-label="Continue setting up {e(registrator["name"])}">Continue setup</a> '
        ) + sync
    return f"""<tr data-registrator-id="{rid}" data-key="{rid}">
<td>{e(registrator["name"])}<div class="muted small">{e(registrator["note"])}</div></td>
<td data-col="status">{_status(registrator["status"])}</td>
<td data-col="device"><code>{e(registrator["device_id"] or "not linked")}</code></td>
<td data-col="cameras">{_camera_names(registrator)}</td>
<td data-col="last-seen">{e(when(registrator["last_seen"]))}</td>
<td class="row-actions">{sync}</td>
</tr>"""


def registrators_page(viewer: Viewer, registrators: Sequence[Mapping[str, Any]]) -> str:
    rows = "\n".join(registrator_row(r, viewer.may_change) for r in registrators)
    actions = """<div class="actions">
<button type="button" id="sync-all" class="secondary">Sync all</button>
<a class="button primary" href="/registrators/new">Add registrator</a>
</div>"""
    body = f"""<div class="heading-row">
<h1>Registrators</h1>
{actions if viewer.may_change else ""}
</div>
{"" if viewer.may_change else _look_only(viewer, "registrators")}
<p id="sync-status" role="status" aria-live="polite"></p>
<table class="list" id="registrators-table">
<caption class="sr-only">Registrators (virtual NVRs) of {e(viewer.org)}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">NVR</th>
<th scope="col">Cameras</th><th scope="col">Last seen</th>
<th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody id="registrator-rows">
{rows}
</tbody>
</table>
<p id="no-registrators" class="empty"{"" if not registrators else " hidden"}>
No registrators yet.</p>"""
    return layout("Registrators", "registrators", body, viewer, viewer.csrf)


WIZARD_STEPS = (
    "Details",
    "Device",
    "Installation",
    "Activation",
    "Connect",
    "Broadcast",
    "Archive",
    "Summary",
)


def _step(number: int, content: str, next_label: str = "Next") -> str:
    title = WIZARD_STEPS[number - 1]
    back = '<button type="button" class="secondary" data-back>Back</button>' if number > 1 else ""
    nxt = (
        f'<button type="button" class="primary" data-next>{e(next_label)}</button>'
        if number < len(WIZARD_STEPS)
        else '<a class="button primary" href="/registrators">Finish</a>'
    )
    return f"""<section class="step" data-step="{number}" aria-labelledby="step-{number}-title"
 {"" if number == 1 else "hidden"}>
<h2 id="step-{number}-title" tabindex="-1">Step {number} of {len(WIZARD_STEPS)}: {title}</h2>
{content}
<p class="error" role="alert" data-error></p>
<div class="actions">{back}{nxt}</div>
</section>"""


def wizard_page(viewer: Viewer, code: str, resume: str = "") -> str:
    """The wizard; `resume` is the id of a registrator whose setup was left half-way."""
    current = ' aria-current="step"'
    steps_nav = "".join(
        f'<li data-step="{i}"{current if i == 1 else ""}>{name}</li>'
        for i, name in enumerate(WIZARD_STEPS, 1)
    )
    steps = "\n".join(
        (
            _step(
                1,
                f"""<div class="grid-form">
<label for="reg-org">Organization</label>
<input id="reg-org" value="{e(viewer.org)}" readonly>
<label for="reg-name">Name</label>
<input id="reg-name" required autocomplete="off" placeholder="Server room">
<label for="reg-note">Note</label>
<textarea id="reg-note" rows="2"></textarea>
</div>""",
            ),
            _step(
                2,
                """<fieldset class="choices"><legend>What is the registrator?</legend>
<label><input type="radio" name="reg-device" value="virtual" checked>
Virtual: camagent on a Linux server</label>
<label><input type="radio" name="reg-device" value="network">
Network: a separate NVR box on the network</label>
</fieldset>""",
                "Create and continue",
            ),
            _step(
                3,
                """<p>Run this on the server as root. It installs camagent and prints an
activation code.</p>
<div class="copy-row"><pre><code id="one-liner">…</code></pre>
<button type="button" class="secondary" data-copy="one-liner">Copy command</button></div>
<p class="hint" role="status" data-copy-status></p>""",
            ),
            _step(
                4,
                f"""<div class="inline-form">
<label for="activation-code">Activation code the NVR shows</label>
<input id="activation-code" value="{e(code)}" autocomplete="off" spellcheck="false"
 placeholder="ABCD-EFGH-JK12">
<button type="button" class="secondary" id="show-checks">Show checks</button>
</div>
<p class="hint">The NVR checked itself before showing its code; the results follow it live.</p>
<table class="list" id="checks">
<caption class="sr-only">Device-side checks of the NVR</caption>
<thead><tr><th scope="col">Check</th><th scope="col">Result</th><th scope="col">Detail</th>
<th scope="col">How to fix</th></tr></thead>
<tbody id="check-rows" aria-live="polite"></tbody>
</table>""",
            ),
            _step(
                5,
                f"""<div class="inline-form">
<label for="connect-code">Activation code</label>
<input id="connect-code" value="{e(code)}" autocomplete="off" spellcheck="false">
<button type="button" class="primary" id="activate">Activate</button>
</div>
<p id="connect-status" role="status" aria-live="polite"></p>""",
            ),
            _step(
                6,
                """<div class="grid-form">
<label class="check"><input type="checkbox" id="broadcast-enabled"> Broadcast to the cloud</label>
<label for="broadcast-quality">Quality</label>
<select id="broadcast-quality"><option value="low">Low</option>
<option value="medium" selected>Medium</option><option value="high">High</option></select>
</div>
<p role="status" data-saved></p>""",
                "Save and continue",
            ),
            _step(
                7,
                """<div class="grid-form">
<label class="check"><input type="checkbox" id="archive-enabled"> Record an archive</label>
<label for="archive-days">Days to keep</label>
<input id="archive-days" type="number" min="1" max="365" value="7">
</div>
<p role="status" data-saved></p>""",
                "Save and continue",
            ),
            _step(8, '<dl class="facts" id="summary"></dl><ul id="waiting-for"></ul>'),
        )
    )
    body = f"""<p class="crumbs"><a href="/registrators">Registrators</a> &rsaquo; Add</p>
<h1>Add registrator</h1>
<div role="tablist" aria-label="How to link the NVR" class="tabs">
<button type="button" role="tab" id="tab-wizard" aria-selected="true"
 aria-controls="panel-wizard">Activation code</button>
<button type="button" role="tab" id="tab-token" aria-selected="false"
 aria-controls="panel-token" tabindex="-1">Copy token to the registrator</button>
</div>
<section role="tabpanel" id="panel-wizard" aria-labelledby="tab-wizard" class="card">
<ol class="steps" aria-label="Wizard steps">{steps_nav}</ol>
<div id="wizard" data-resume="{e(resume)}">
{steps}
</div>
</section>
<section role="tabpanel" id="panel-token" aria-labelledby="tab-token" class="card" hidden>
<h2>Copy token to the registrator</h2>
<p>Make a registration token, then paste it on the NVR:
<code>camagent nvr register TOKEN</code>. It is valid for 6 hours and works once.</p>
<form id="token-form" class="grid-form" novalidate>
<label for="token-title">Title</label><input id="token-title" autocomplete="off">
<label for="token-note">Note</label><input id="token-note" autocomplete="off">
<div class="actions"><button type="submit" class="primary">Generate token</button></div>
<p class="error" role="alert" id="token-error"></p>
</form>
<div id="token-result" hidden>
<label for="token-value">Registration token</label>
<div class="copy-row"><input id="token-value" readonly spellcheck="false">
<button type="button" class="secondary" data-copy="token-value">Copy</button></div>
<p class="hint" role="status" data-copy-status></p>
<p>Expires in <span id="token-countdown" role="timer" aria-live="off">6:00:00</span></p>
</div>
</section>"""
    return layout("Add registrator", "wizard", body, viewer, viewer.csrf)


# --- sessions -----------------------------------------------------------------------------


def sessions_page(viewer: Viewer, sessions: Sequence[Mapping[str, Any]]) -> str:
    rows = "\n".join(
        f"""<tr data-session-id="{e(s["id"])}">
<td>{e(s["device"])}{' <span class="badge">this session</span>' if s["current"] else ""}</td>
<td>{e(s["software"])}</td><td class="time">{e(when(s["started"]))}</td>
<td class="time">{e(when(s["last_activity"]))}</td>
<td class="row-actions"><button type="button" class="danger" data-end-session="{e(s["id"])}"
 data-current="{"yes" if s["current"] else "no"}">End session</button></td>
</tr>"""
        for s in sessions
    )
    body = f"""<h1>Sessions</h1>
<p class="hint">Everywhere you are logged in, newest first. Ending a session logs it out;
work not saved in it may be lost. Ending this session logs you out here.</p>
<table class="list" id="sessions-table">
<caption class="sr-only">Your sessions</caption>
<thead><tr><th scope="col">Device</th><th scope="col">Software</th><th scope="col">Started</th>
<th scope="col">Last activity</th><th scope="col"><span class="sr-only">Action</span></th></tr>
</thead>
<tbody>
{rows}
</tbody>
</table>
<p id="sessions-status" role="status" aria-live="polite"></p>"""
    return layout("Sessions", "sessions", body, viewer, viewer.csrf)


def not_found_page(viewer: Viewer | None, what: str) -> str:
    body = f'<h1>Not found</h1><p>{e(what)}</p><p><a href="/cameras">Back to cameras</a></p>'
    return layout("Not found", "missing", body, viewer, viewer.csrf if viewer else "")
