"""`CloudSession.add_or_repassword_camera` (what `finder push --profile` uses): a fresh add,
or a waiting claim of this organization that takes the new password. The cloud here is a
recording stand-in answering as the mock's API does (POST/GET/PATCH /v1/cameras); the
same flow runs against the real mock in tests/e2e/test_cloud_cli_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from agent.account.api import CloudSession
from agent.account.client import Response
from agent.account.errors import CloudError
from agent.account.profiles import Profile
from agent.account.session_file import StoredSession


class StandInCloud:
    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, body: Any = None, bearer: str = "") -> Response:
        self.calls.append((method, path, body))
        status, answer = self.answers[(method, path)]
        return Response(status, answer, {})


def session(answers: dict[tuple[str, str], tuple[int, Any]]) -> tuple[CloudSession, StandInCloud]:
    cloud = StandInCloud(answers)
    profile = Profile(name="site", url="https://cloud.test")
    stored = StoredSession(session="s", session_id="1", login="admin", url=profile.url)
    return CloudSession(profile, cloud, stored), cloud  # type: ignore[arg-type]


LISTING = {
    "cameras": [
        {"camera_id": "c-other", "device_id": "02:00:00:00:00:09", "status": "online"},
        {"camera_id": "c/7", "device_id": "02:00:00:00:00:01", "status": "waiting"},
    ]
}


def test_a_fresh_add_is_one_post() -> None:
    # The sealed token is what a camera takes outside its poll (docs/design.md §2.9).
    answer = {"token": "T1", "sealed_token": "S1"}
    cloud_session, cloud = session({("POST", "/v1/cameras"): (201, answer)})
    assert cloud_session.add_or_correct_camera("02:00:00:00:00:01", "pw", "hall") == ("S1", False)
    assert cloud.calls == [
        (
            "POST",
            "/v1/cameras",
            {"device_id": "02:00:00:00:00:01", "password": "pw", "name": "hall"},
        )
    ]


def test_a_waiting_claim_of_this_org_takes_the_new_password() -> None:
    cloud_session, cloud = session(
        {
            ("POST", "/v1/cameras"): (409, {"error": "a camera with device ID … already exists"}),
            ("GET", "/v1/cameras"): (200, LISTING),
            ("PATCH", "/v1/cameras/c%2F7"): (
                200,
                {"camera_id": "c/7", "token": "T7", "sealed_token": "S7"},
            ),
        }
    )
    assert cloud_session.add_or_correct_camera("02-00-00-00-00-01", "right", "") == ("S7", True)
    assert cloud.calls[-1] == ("PATCH", "/v1/cameras/c%2F7", {"password": "right"})


def test_a_cloud_that_answers_no_sealed_token_is_an_error_not_a_plain_token() -> None:
    """A plain token pushed to a camera would be refused by it: never fall back to one."""
    cloud_session, _ = session({("POST", "/v1/cameras"): (201, {"token": "T1"})})
    with pytest.raises(CloudError, match="no 'sealed_token'"):
        cloud_session.add_camera("02:00:00:00:00:01", "pw")


def test_a_proven_camera_is_not_taken_and_the_message_says_what_to_do() -> None:
    cloud_session, _ = session(
        {
            ("POST", "/v1/cameras"): (409, {"error": "exists"}),
            ("GET", "/v1/cameras"): (200, LISTING),
            ("PATCH", "/v1/cameras/c%2F7"): (409, {"error": "only a waiting camera's"}),
        }
    )
    with pytest.raises(CloudError, match=r"already in this organization.*delete it there first"):
        cloud_session.add_or_repassword_camera("02:00:00:00:00:01", "pw")


def test_other_refusals_are_reported_as_they_are() -> None:
    cloud_session, cloud = session({("POST", "/v1/cameras"): (400, {"error": "bad device ID"})})
    with pytest.raises(CloudError, match="could not add the camera: bad device ID"):
        cloud_session.add_or_repassword_camera("x", "pw")
    assert len(cloud.calls) == 1
    missing, _ = session(
        {
            ("POST", "/v1/cameras"): (409, {"error": "exists"}),
            ("GET", "/v1/cameras"): (200, {"cameras": []}),
        }
    )
    with pytest.raises(CloudError, match="not in this organization's camera list"):
        missing.add_or_repassword_camera("02:00:00:00:00:01", "pw")
