"""Acting in the cloud through a server profile, for other commands (`finder push
--profile`, `nvr register --profile`):

    from agent.account.api import open_session

    cloud = open_session("prod")          # None: the default profile
    sealed = cloud.add_camera("aa:bb:cc:dd:ee:ff", "label-password", name="Hall")

Synchronous, standard library only. Every failure is a CamagentError subclass whose
message says what to run or fix.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass
from typing import Any

from agent.account import profiles, session_file
from agent.account.client import CloudClient, Response
from agent.account.console import printable
from agent.account.errors import CloudError, NotLoggedInError
from agent.account.profiles import Profile
from agent.account.session_file import StoredSession

__all__ = ["CloudError", "CloudSession", "NotLoggedInError", "open_session"]


def login_hint(profile: Profile) -> str:
    from agent import hints

    return f"run `{hints.show('cloud login', profile=profile.name)}`"


@dataclass
class CloudSession:
    profile: Profile
    client: CloudClient
    stored: StoredSession

    def request(self, method: str, path: str, body: Any = None) -> Response:
        """A call with the session; NotLoggedInError (and the stored token forgotten) when
        the cloud no longer accepts it."""
        answer = self.client.request(method, path, body, bearer=self.stored.session)
        if answer.status == 401:
            session_file.forget(self.profile.name)
            raise NotLoggedInError(
                f"the session with {self.profile.url} (server profile {self.profile.name!r}) "
                f"has ended or expired: {login_hint(self.profile)}"
            )
        return answer

    def sessions(self) -> list[dict[str, Any]]:
        answer = self._expect(200, self.request("GET", "/v1/sessions"), "list the sessions")
        if not isinstance(answer.body, list):
            raise CloudError("the cloud sent a malformed session list")
        return [s for s in answer.body if isinstance(s, dict)]

    def end_session(self, session_id: str) -> None:
        quoted = urllib.parse.quote(session_id, safe="")
        self._expect(204, self.request("DELETE", f"/v1/sessions/{quoted}"), "end the session")

    def logout(self) -> None:
        # Ended already (NotLoggedInError): logged out is what the caller wanted.
        with contextlib.suppress(NotLoggedInError):
            self._expect(204, self.request("POST", "/v1/auth/logout"), "log out")
        session_file.forget(self.profile.name)

    def add_camera(
        self, device_id: str, password: str, name: str = "", org: str | None = None
    ) -> str:
        """Add a camera to the cloud (POST /v1/cameras); its token sealed under the
        password given, which the camera opens only if that is its label's (§2.9)."""
        body: dict[str, Any] = {"device_id": device_id, "password": password, "name": name}
        if org is not None:
            body["org"] = org
        answer = self._expect(201, self.request("POST", "/v1/cameras", body), "add the camera")
        return self._field(answer, "sealed_token")

    def add_or_repassword_camera(self, device_id: str, password: str, name: str = "") -> str:
        """Add the camera; if this organization already has it waiting for its device
        (added earlier with another password), give that claim `password` instead
        (PATCH /v1/cameras/{id}). Its sealed token either way."""
        return self.add_or_correct_camera(device_id, password, name)[0]

    def add_or_correct_camera(
        self, device_id: str, password: str, name: str = ""
    ) -> tuple[str, bool]:
        """`add_or_repassword_camera`, and whether it corrected a waiting camera's
        password rather than adding one (so that what is printed is what was done)."""
        body = {"device_id": device_id, "password": password, "name": name}
        answer = self.request("POST", "/v1/cameras", body)
        if answer.status == 201:
            return self._field(answer, "sealed_token"), False
        if answer.status != 409:
            self._expect(201, answer, "add the camera")
        camera_id = self._camera_id_of(device_id)
        quoted = urllib.parse.quote(camera_id, safe="")
        changed = self.request("PATCH", f"/v1/cameras/{quoted}", {"password": password})
        if changed.status == 409:
            raise CloudError(
                f"camera {device_id} is already in this organization at {self.profile.url} "
                "and its device has proven its password, so the cloud keeps it: if it is "
                "meant to provision again, delete it there first (or reset the device)"
            )
        self._expect(200, changed, "change the waiting camera's password")
        return self._field(changed, "sealed_token"), True

    def _camera_id_of(self, device_id: str) -> str:
        listing = self._expect(200, self.request("GET", "/v1/cameras"), "list the cameras")
        body = listing.body
        cameras = body.get("cameras") if isinstance(body, dict) else body
        wanted = _normal_id(device_id)
        for camera in cameras if isinstance(cameras, list) else []:
            if isinstance(camera, dict) and _normal_id(str(camera.get("device_id"))) == wanted:
                camera_id = camera.get("camera_id")
                if isinstance(camera_id, str) and camera_id:
                    return camera_id
        raise CloudError(
            f"{self.profile.url} says camera {device_id} exists already, but it is not in "
            "this organization's camera list: it cannot be changed from here"
        )

    def registration_token(self, title: str = "", note: str = "") -> str:
        """A registration token for an NVR (POST /v1/registrator-tokens): 6 h, single use."""
        answer = self._expect(
            201,
            self.request("POST", "/v1/registrator-tokens", {"title": title, "note": note}),
            "make a registration token",
        )
        return self._field(answer, "token")

    def _expect(self, status: int, answer: Response, what: str) -> Response:
        if answer.status != status:
            raise CloudError(
                f"{self.profile.url} (server profile {self.profile.name!r}) could not {what}: "
                f"{printable(answer.message(), 300)}"
            )
        return answer

    def _field(self, answer: Response, key: str) -> str:
        value = answer.body.get(key) if isinstance(answer.body, dict) else None
        if not isinstance(value, str) or not value:
            raise CloudError(f"the cloud's answer has no {key!r}")
        return value


def _normal_id(device_id: str) -> str:
    from agent.errors import WireError
    from agent.provisioning.wire import normalize_device_id

    try:
        return normalize_device_id(device_id)
    except WireError:
        return device_id.strip()


def stored_session(profile: Profile) -> StoredSession:
    """The saved session of `profile`; NotLoggedInError when there is none usable."""
    stored = session_file.load(profile.name)
    if stored is None:
        raise NotLoggedInError(
            f"not logged in to {profile.url} (server profile {profile.name!r}): "
            f"{login_hint(profile)}"
        )
    if stored.url != profile.url:
        raise NotLoggedInError(
            f"the saved session of server profile {profile.name!r} is for {stored.url}, but "
            f"the profile now points at {profile.url}: {login_hint(profile)}"
        )
    return stored


def open_session(profile: str | None = None) -> CloudSession:
    """A live session through server profile `profile` (None: the default profile).

    Checks with the cloud that the session is still valid, so callers fail before they
    start work. Raises NoProfileError, ProfileError, NotLoggedInError or CloudError."""
    chosen = profiles.load().get(profile)
    session = CloudSession(chosen, CloudClient(chosen), stored_session(chosen))
    session.sessions()
    return session


def same_origin(a: str, b: str) -> bool:
    def origin(url: str) -> tuple[str, str, int]:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443

    try:
        return origin(a) == origin(b)
    except ValueError:
        return False


def registration_token_for(
    profile: str | None, trusted_url: str, title: str = "", note: str = ""
) -> str:
    """A registration token made through `profile` for an NVR that trusts `trusted_url`;
    refused before asking when the profile is for another cloud (the token would be
    useless there)."""
    cloud = open_session(profile)
    if not same_origin(cloud.profile.url, trusted_url):
        raise CloudError(
            f"server profile {cloud.profile.name!r} is for {cloud.profile.url}, but this NVR "
            f"trusts {trusted_url} ([cloud] url): use a profile for that cloud (--profile NAME)"
        )
    return cloud.registration_token(title=title, note=note)
