"""Login captcha against the mock as a subprocess: off, always, after N failures; wrong
answers, refresh, expiry on the mock clock, single use."""

from __future__ import annotations

import io

from PIL import Image

from cloud_mock.captcha import ALPHABET, IMAGE_SIZE
from cloud_mock.testing import MockCloud
from tests.cloud_mock.accounts_helpers import (
    accounts_mock_fixture,  # noqa: F401 - fixture
    cloud_fixture,  # noqa: F401 - fixture
    login,
    login_ok,
    png_of,
)


def _captcha(cloud: MockCloud) -> tuple[str, str]:
    status, answer = cloud.request("GET", "/v1/auth/captcha")
    assert status == 200
    assert answer["expires_in"] == 60
    png_of(answer)
    return answer["captcha_id"], cloud.captcha_answer(answer["captcha_id"])


def _required(cloud: MockCloud, login_name: str, **extra: str) -> dict[str, str]:
    """A login that must be refused with 428; returns the body (with its new captcha)."""
    status, answer = login(cloud, login_name, **extra)
    assert status == 428, answer
    assert answer["error"] == "captcha_required"
    assert answer["expires_in"] == 60
    png_of(answer)
    result: dict[str, str] = answer
    return result


def test_captcha_off_logs_in_without_one(cloud: MockCloud) -> None:
    assert login_ok(cloud, "ann")["user"]["login"] == "ann"


def test_captcha_always_asks_then_accepts_the_answer_in_any_case(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    refused = _required(cloud, "ann")
    assert "captcha" in refused["message"]
    png = png_of(refused)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == IMAGE_SIZE
    answer = cloud.captcha_answer(refused["captcha_id"])
    assert 4 <= len(answer) <= 6
    assert set(answer) <= set(ALPHABET)
    status, body = login(
        cloud, "ann", captcha_id=refused["captcha_id"], captcha_answer=f" {answer.lower()} "
    )
    assert status == 200, body
    assert body["user"] == {"login": "ann", "org": "acme", "role": "owner"}


def test_wrong_answer_gives_a_new_captcha_and_uses_up_the_old(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    first = _required(cloud, "ann")
    right = cloud.captcha_answer(first["captcha_id"])
    wrong = "".join("A" if c != "A" else "C" for c in right)
    second = _required(cloud, "ann", captcha_id=first["captcha_id"], captcha_answer=wrong)
    assert "wrong captcha" in second["message"]
    assert second["captcha_id"] != first["captcha_id"]
    # The first id is spent even though it was answered wrongly.
    status, _ = cloud.request("GET", f"/v1/test/captcha/{first['captcha_id']}")
    assert status == 404
    third = _required(cloud, "ann", captcha_id=first["captcha_id"], captcha_answer=right)
    assert "unknown captcha" in third["message"]
    # The right password never got past a wrong captcha, nor counted as a failure.
    status, body = login(
        cloud,
        "ann",
        captcha_id=third["captcha_id"],
        captcha_answer=cloud.captcha_answer(third["captcha_id"]),
    )
    assert status == 200, body


def test_refresh_kills_the_captcha_it_replaces_and_no_other(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    mine_id, mine_answer = _captcha(cloud)
    # Someone else behind the same address asks for one: mine stays alive.
    _captcha(cloud)
    status, _ = cloud.request("GET", f"/v1/test/captcha/{mine_id}")
    assert status == 200
    old_id, old_answer = _captcha(cloud)
    status, refreshed = cloud.request("GET", f"/v1/auth/captcha?replaces={old_id}")
    assert status == 200
    refused = _required(cloud, "ann", captcha_id=old_id, captcha_answer=old_answer)
    assert "replaced" in refused["message"]
    assert cloud.request("GET", f"/v1/test/captcha/{refreshed['captcha_id']}")[0] == 200
    status, body = login(cloud, "ann", captcha_id=mine_id, captcha_answer=mine_answer)
    assert status == 200, body


def test_a_captcha_drawn_for_one_login_does_not_solve_another(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    for_ann = _required(cloud, "ann")
    answer = cloud.captcha_answer(for_ann["captcha_id"])
    refused = _required(cloud, "bob", captcha_id=for_ann["captcha_id"], captcha_answer=answer)
    assert "another login" in refused["message"]
    # A refresh of ann's captcha is still ann's.
    again = _required(cloud, "ann")
    status, refreshed = cloud.request("GET", f"/v1/auth/captcha?replaces={again['captcha_id']}")
    assert status == 200
    solved = cloud.captcha_answer(refreshed["captcha_id"])
    assert _required(cloud, "bob", captcha_id=refreshed["captcha_id"], captcha_answer=solved)


def test_captcha_lives_60_s_of_the_mock_clock(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    captcha_id, answer = _captcha(cloud)
    cloud.advance_clock(59)
    status, body = login(cloud, "ann", captcha_id=captcha_id, captcha_answer=answer)
    assert status == 200, body

    captcha_id, answer = _captcha(cloud)
    cloud.advance_clock(61)
    refused = _required(cloud, "ann", captcha_id=captcha_id, captcha_answer=answer)
    assert "expired" in refused["message"]


def test_a_solved_captcha_cannot_be_used_again(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    captcha_id, answer = _captcha(cloud)
    status, _ = login(cloud, "ann", captcha_id=captcha_id, captcha_answer=answer)
    assert status == 200
    refused = _required(cloud, "ann", captcha_id=captcha_id, captcha_answer=answer)
    assert "already used" in refused["message"]


def test_captcha_after_n_failures_counts_per_login_and_resets_on_success(
    cloud: MockCloud,
) -> None:
    cloud.set_settings(captcha={"after_failures": 2})
    for _ in range(2):
        status, body = login(cloud, "ann", password="wrong")
        assert (status, body["error"]) == (401, "wrong_login")
    refused = _required(cloud, "ann")  # right password, but the captcha comes first
    # Another login is not affected by ann's failures.
    login_ok(cloud, "cid")
    status, body = login(
        cloud,
        "ann",
        captcha_id=refused["captcha_id"],
        captcha_answer=cloud.captcha_answer(refused["captcha_id"]),
    )
    assert status == 200, body
    # The success reset the count: one more failure does not bring the captcha back.
    status, _ = login(cloud, "ann", password="wrong")
    assert status == 401
    login_ok(cloud, "ann")


def test_unknown_logins_get_the_captcha_like_known_ones(cloud: MockCloud) -> None:
    """Otherwise the captcha (or its absence) would tell which logins exist."""
    cloud.set_settings(captcha={"after_failures": 1})
    for name in ("ann", "nobody-here"):
        status, body = login(cloud, name, password="wrong")
        assert (status, body) == (
            401,
            {"error": "wrong_login", "message": "wrong login or password"},
        )
        _required(cloud, name, password="wrong")


def test_captcha_test_hook_answers_only_live_ids(cloud: MockCloud) -> None:
    for captcha_id in ("nope", "x" * 300, "%00"):
        status, body = cloud.request("GET", f"/v1/test/captcha/{captcha_id}")
        assert status == 404
        assert "captcha" in body["error"]


def test_captcha_fields_of_the_wrong_type_are_400(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    for extra in ({"captcha_id": 5}, {"captcha_id": "x", "captcha_answer": ["A"]}):
        status, body = login(cloud, "ann", **extra)
        assert status == 400, body
        assert "captcha" in body["error"]
