"""HTTPS JSON calls to a cloud, with the standard library only (the CLI stays light).

Certificates are always verified: the system store plus the profile's CA file.
Redirects are not followed, so a bearer credential never travels to another place.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from agent import hints
from agent.account.errors import CloudError
from agent.account.profiles import Profile
from agent.errors import ConfigError
from agent.tls import client_context

TIMEOUT_S = 30.0
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: dict[str, str]

    def message(self) -> str:
        """The human text of an error answer, whatever its shape."""
        if isinstance(self.body, dict):
            text = self.body.get("message") or self.body.get("error")
            if isinstance(text, str) and text:
                return text
        return f"HTTP {self.status}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def ssl_context(ca_file: str = "") -> ssl.SSLContext:
    try:
        return client_context(ca_file, setting="the CA file")
    except ConfigError as error:
        raise CloudError(
            f"{error}; fix the path: `{hints.show('cloud servers remove')}`, then "
            f"`{hints.show('cloud servers add ca', ca='PEM')}`"
        ) from None


class CloudClient:
    def __init__(self, profile: Profile, timeout: float = TIMEOUT_S) -> None:
        self.profile = profile
        self.timeout = timeout
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ssl_context(profile.ca_file)), _NoRedirects()
        )

    def request(
        self, method: str, path: str, body: Any = None, *, bearer: str | None = None
    ) -> Response:
        """One call; HTTP error statuses are answers (a Response), network trouble raises
        CloudError with what to check."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        url = self.profile.url + path
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - https only (profiles.normalize_url)
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return Response(answer.status, _decode(answer.read(MAX_BODY)), dict(answer.headers))
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, _decode(error.read(MAX_BODY)), dict(error.headers))
        except urllib.error.URLError as error:
            raise CloudError(self._explain(error.reason)) from None
        except (TimeoutError, OSError) as error:
            raise CloudError(self._explain(error)) from None

    def _explain(self, reason: object) -> str:
        where = f"{self.profile.url} (server profile {self.profile.name!r})"
        if isinstance(reason, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of {where} is not trusted ({reason.verify_message}): if the "
                "server uses its own authority, add the profile again with --ca-file PEM"
            )
        if isinstance(reason, TimeoutError):
            return f"{where} did not answer within {self.timeout:g} s: check the network"
        return f"cannot reach {where}: {reason}; check the URL and the network"


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
