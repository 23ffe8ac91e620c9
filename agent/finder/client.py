"""Talk to one device's local HTTPS API, pinned to its certificate fingerprint.

The device's certificate is self-signed, so the CA check is off; what is checked instead is
the SHA-256 of the certificate the peer presents, by aiohttp (`aiohttp.Fingerprint`) on
every new connection right after the TLS handshake, before a single byte of the request
is sent. A Digest response or a token therefore never reaches a peer with another key.
Digest (RFC 7616) is aiohttp's own DigestAuthMiddleware, not a hand-written one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from agent import hints
from agent.finder.errors import AuthError, DeviceRefused, FinderError, FingerprintError
from agent.finder.records import is_fingerprint, printable

DIGEST_USER = "admin"
TIMEOUT_S = 10.0
PASSWORD_CHECK_PATH = "/v1/token"
BAD_REQUEST = 400


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def __str__(self) -> str:
        return self.base_url.removeprefix("https://")


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _unverified_context() -> ssl.SSLContext:
    # Only to read the certificate a device presents; nothing is sent on this connection.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def presented_fingerprint(endpoint: Endpoint, timeout: float = TIMEOUT_S) -> str:
    """Open a TLS connection, read the peer's certificate, close: its SHA-256 in hex."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(endpoint.host, endpoint.port, ssl=_unverified_context()),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise FinderError(unreachable_message(endpoint, exc)) from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        # Closing a connection we only looked at: nothing to report if that fails.
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise FinderError(f"the device at {endpoint} presented no TLS certificate")
    return fingerprint_of(der)


def unreachable_message(endpoint: Endpoint, exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        reason = "no answer in time"
    return (
        f"cannot reach the device at {endpoint} ({reason}); check that it is powered, on "
        "this network, and that its local API is enabled"
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None = None


class DeviceClient:
    """One device, one shared ClientSession, every connection pinned to `fp`."""

    def __init__(
        self, endpoint: Endpoint, fp: str, fp_source: str, timeout: float = TIMEOUT_S
    ) -> None:
        self.endpoint = endpoint
        self.fp = fp
        self.fp_source = fp_source  # e.g. "announces on the LAN": for the mismatch message
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DeviceClient:
        if self._session is None:  # entered once by open_device, again by its caller
            if not is_fingerprint(self.fp):
                raise FinderError(
                    f"{self.fp_source} {printable(self.fp)!r}, which is not a SHA-256 "
                    "fingerprint (64 hex digits): nothing is sent to it"
                )
            connector = aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(bytes.fromhex(self.fp)))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def info(self) -> dict[str, Any]:
        answer = await self._request("GET", "/v1/info", None, None)
        if answer.status != 200:
            raise FinderError(self._refusal(answer, "GET /v1/info"))
        return answer.body

    async def command(self, path: str, body: dict[str, Any] | None, password: str) -> Answer:
        """POST with Digest; returns the 2xx answer, raises with a clear message otherwise."""
        if not hasattr(aiohttp, "DigestAuthMiddleware"):  # Debian 12 ships aiohttp 3.8
            raise FinderError(
                f"the finder needs aiohttp 3.12 or newer for Digest authentication "
                f"(this is {aiohttp.__version__}): run it from a venv with "
                "`pip install 'aiohttp>=3.12'`, or from a source checkout (scripts/setup.sh)"
            )
        digest = aiohttp.DigestAuthMiddleware(DIGEST_USER, password)
        answer = await self._request("POST", path, body, digest)
        if answer.status == 401:
            raise AuthError(password_refused_message(answer.body))
        if answer.status == 429:
            raise AuthError(locked_out_message(answer))
        if not 200 <= answer.status < 300:
            raise DeviceRefused(self._refusal(answer, f"POST {path}"), answer.status)
        return answer

    async def check_password(self, password: str) -> None:
        """Prove `password` against the device and change nothing there: raises AuthError
        when it is refused.

        The local API authenticates before it reads a body, so a Digest-authenticated
        `POST /v1/token` with an empty object is a no-op that answers 400 (no token
        given) to the right password and 401 to a wrong one.
        """
        try:
            await self.command(PASSWORD_CHECK_PATH, {}, password)
        except DeviceRefused as exc:
            if exc.status != BAD_REQUEST:
                raise

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        digest: aiohttp.DigestAuthMiddleware | None,
    ) -> Answer:
        assert self._session is not None, "use DeviceClient as an async context manager"
        try:
            async with self._session.request(
                method,
                self.endpoint.base_url + path,
                json=body if body is not None else None,
                middlewares=(digest,) if digest is not None else (),
            ) as response:
                raw = await response.read()
                return Answer(response.status, _json_body(raw), response.headers.get("Retry-After"))
        except aiohttp.ServerFingerprintMismatch as exc:
            raise FingerprintError(self._mismatch(exc.got.hex())) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise FinderError(unreachable_message(self.endpoint, exc)) from None

    def _mismatch(self, got: str) -> str:
        return (
            f"the device at {self.endpoint} presented a certificate with fingerprint {got}, "
            f"but the device {self.fp_source} {self.fp}: it may be an impostor, so nothing "
            f"was sent. Scan again (`{hints.show('finder scan')}`) and compare the fingerprint "
            f"with the one the device shows (`{hints.show('device status')}` on the device)."
        )

    def _refusal(self, answer: Answer, what: str) -> str:
        message = answer.body.get("message") or answer.body.get("error") or "no explanation"
        return f"the device at {self.endpoint} refused {what} (HTTP {answer.status}): {message}"


def password_refused_message(body: dict[str, Any]) -> str:
    message = f"the device refused the password for user {DIGEST_USER}"
    left = next((body[k] for k in ("tries_left", "attempts_left", "remaining") if k in body), None)
    if isinstance(left, int):
        tries = "1 try" if left == 1 else f"{left} tries"
        message += f" ({tries} left before it locks out password attempts for a while)"
    return message + "; the password is the one on the device's label"


def locked_out_message(answer: Answer) -> str:
    seconds = answer.retry_after if (answer.retry_after or "").isdigit() else None
    if seconds is None:
        value = answer.body.get("retry_after")
        seconds = str(value) if isinstance(value, int) else None
    wait = f"for {seconds} s" if seconds is not None else "for a while"
    return (
        f"the device is locked out {wait} after too many wrong passwords; "
        "wait, then try again with the password on its label"
    )


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"value": data}
