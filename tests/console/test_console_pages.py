"""The console's templates rendered alone (no server): what each status shows, and that
every value is escaped."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest

from cloud_mock.console import pages

VIEWER = pages.Viewer("admin", "demo", "owner", "csrf-token")
MOVED_AT = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


def camera(**changes: Any) -> dict[str, Any]:
    return {
        "camera_id": "c1",
        "device_id": "02:c0:00:00:00:01",
        "name": "Porch",
        "org": "demo",
        "status": "online",
        "last_seen": None,
        "created": 0.0,
        **changes,
    }


def render(template: str, **context: Any) -> str:
    base = {"title": "t", "page": "p", "viewer": VIEWER, "csrf": VIEWER.csrf}
    return pages.environment().get_template(template).render(**base, **context)


def cameras_page(*cameras: dict[str, Any]) -> str:
    return render("cameras.html", cameras=list(cameras), registrators=[], scanner=True)


def test_a_moved_camera_says_so_with_the_time_on_the_list_and_its_page() -> None:
    moved = camera(status="moved", moved_at=MOVED_AT)
    for html in (cameras_page(moved), render("camera.html", camera=moved, polls=[])):
        assert '<span class="status status-moved">moved</span>' in html
        assert "to another account, 2026-05-28 20:26:40 UTC" in html


def test_the_scan_button_knows_whether_the_decoder_is_installed() -> None:
    installed = render("cameras.html", cameras=[], registrators=[], scanner=True)
    assert 'data-scanner="yes"' in installed
    assert "/console/static/scan.js" in installed
    missing = render("cameras.html", cameras=[], registrators=[], scanner=False)
    assert 'data-scanner="no"' in missing


def test_a_moved_camera_without_a_time_still_says_where_it_went() -> None:
    html = cameras_page(camera(status="moved"))
    assert "to another account</span>" in html


@pytest.mark.parametrize("status", ["online", "waiting", "suspended", "<b>x</b>"])
def test_any_status_the_api_gives_is_shown_as_given(status: str) -> None:
    html = cameras_page(camera(status=status))
    shown = status.replace("<", "&lt;").replace(">", "&gt;")
    assert f">{shown}</span>" in html
    assert "to another account" not in html


def test_every_value_is_escaped() -> None:
    evil = '"><script>alert(1)</script>'
    registrator = {
        "id": evil,
        "name": evil,
        "note": evil,
        "device": "virtual",
        "status": evil,
        "device_id": evil,
        "device_name": evil,
        "version": evil,
        "checks": [{"name": evil, "status": "ok", "detail": evil, "fix": evil}],
        "cameras": [{"name": evil, "url": evil}],
        "broadcast": {"enabled": True, "quality": "high"},
        "archive": {"enabled": False, "days": 7},
        "created": 0.0,
        "last_seen": None,
        "linked_at": None,
    }
    named = camera(name=evil, device_id=evil, camera_id=evil, status=evil)
    polls = [{"at": 0, "result": evil, "wait": 1, "held_s": 0}]
    for html in (
        render("cameras.html", cameras=[named], registrators=[registrator], scanner=False),
        render("camera.html", camera=named, polls=polls),
        render("registrators.html", registrators=[registrator]),
        render("registrator.html", registrator=registrator),
        render("wizard.html", code=evil, resume=evil),
        render("not_found.html", what=evil, back=("/cameras", evil)),
    ):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_list_shows_a_thumbnail_or_says_why_there_is_none() -> None:
    url = "/v1/cameras/c1/thumbnail"
    shot = camera(video={"thumbnail": {"at": 1780000000.5, "url": url}, "thumbnail_reason": None})
    offline = camera(
        camera_id="c2", name="Yard", video={"thumbnail": None, "thumbnail_reason": "offline"}
    )
    older = camera(camera_id="c3", name="Shed")  # an API without `video`
    html = cameras_page(shot, offline, older)
    # Its time in the URL: a new thumbnail is a new URL, never a cached picture.
    assert 'src="/console/api/v1/cameras/c1/thumbnail?t=1780000000.5"' in html
    assert 'width="160" height="90" alt="Latest picture from Porch"' in html
    assert '<span class="thumb thumb-none">offline</span>' in html
    assert '<span class="thumb thumb-none">No picture yet</span>' in html


def test_the_camera_page_hands_its_camera_to_the_player_intact() -> None:
    name = """O'Brien's "gate" </script>"""
    page = render("camera.html", camera=camera(name=name), polls=[])
    found = re.search(r"data-camera='([^']*)'", page)
    assert found is not None
    assert json.loads(unescape(found.group(1)))["name"] == name


def test_the_add_form_says_when_a_camera_connects_and_how_to_hurry_it() -> None:
    text = " ".join(unescape(re.sub(r"<[^>]+>", "", cameras_page())).split())
    assert "within seconds" not in text.replace("within seconds for about five minutes", "")
    assert "within seconds for about five minutes after it is powered on" in text
    assert "about once an hour (its slow phase)" in text
    assert "camagent poll-now" in text


def test_a_left_over_registrator_says_why_and_offers_no_setup() -> None:
    left_over: dict[str, Any] = {
        "id": "r1",
        "name": "Rack",
        "note": "",
        "device": "virtual",
        "status": "pending",
        "device_id": None,
        "device_name": "",
        "version": "",
        "checks": [],
        "cameras": [],
        "broadcast": {"enabled": False, "quality": "medium"},
        "archive": {"enabled": False, "days": 7},
        "created": 0.0,
        "last_seen": None,
        "linked_at": None,
        "let_go": "its NVR 02:d0:00:00:00:01 registered again (reset or installed again) and "
        "was linked to another registrator on 2026-05-28 20:26:40 UTC: its token is spent "
        "and this registrator has nothing left to set up; delete it",
    }
    html = render("registrator.html", registrator=left_over)
    assert 'id="let-go"' in html
    assert "Left over: its NVR 02:d0:00:00:00:01 registered again" in html
    assert "Continue setup" not in html
    fresh = render("registrator.html", registrator={**left_over, "let_go": ""})
    assert 'id="let-go"' not in fresh
    assert "Continue setup" in fresh
    # The list says it too, and offers nothing to continue.
    listed = render("registrators.html", registrators=[left_over])
    assert "data-let-go" in listed
    assert "data-continue" not in listed
    assert "data-continue" in render(
        "registrators.html", registrators=[{**left_over, "let_go": ""}]
    )
