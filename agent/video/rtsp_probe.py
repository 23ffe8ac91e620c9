"""`probe`: which of the device's RTSP streams answer, and with which codec (design §12.4).

One RTSP `DESCRIBE` (RFC 2326) per stream, answering a `401` once with the URL's
credentials (Digest, RFC 2617/7616, when offered, else Basic), then a look at the SDP
(`sdp.parse_sdp`). No media is read. Network and protocol problems never raise: they
become a `StreamProbe` whose `detail` a person can act on, and which never holds the
password.

Imported only when a probe or `camagent doctor` runs, never by the idle daemon.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import re
import secrets
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import agent
from agent.config import Config
from agent.video.sdp import SdpVideo, parse_sdp

# The SDP reading lives in agent.video.sdp; its names stay importable from here.
__all__ = [
    "DEFAULT_PORTS",
    "MAX_ANSWER",
    "RtspTarget",
    "SdpVideo",
    "StreamProbe",
    "configured_targets",
    "parse_sdp",
    "probe",
    "probe_all",
    "rtsp_targets",
    "stream_address",
]

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}
MAX_ANSWER = 64 * 1024  # headers and body: an SDP is a few hundred bytes
_READ_CHUNK = 4096
# A TLS peer that never answers close_notify must not hold the probe.
_CLOSE_TIMEOUT_S = 1.0
_DIGESTS: dict[str, Callable[[bytes], Any]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_STATUS_LINE = re.compile(r"RTSP/\d\.\d (\d{3})(?: (.*))?")
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


@dataclass(frozen=True)
class StreamProbe:
    """What one target answered. `reachable` means the stream could be pulled as
    configured: the server answered `DESCRIBE` with 200 (a 401 is not reachable)."""

    target: str
    reachable: bool
    codec: str | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "reachable": self.reachable,
            "codec": self.codec,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RtspTarget:
    """One RTSP target of the device and the config key that sets its URL."""

    name: str
    url: str
    key: str


def configured_targets(config: Config) -> list[RtspTarget]:
    """The device's RTSP targets (design §12.1), in config order; the snapshot is HTTP."""
    if config.device.kind == "nvr":
        return [
            RtspTarget(f"{camera.name}/{stream}", url, f"nvr.cameras[{index}].{key}")
            for index, camera in enumerate(config.nvr.cameras)
            for stream, key, url in (
                ("main", "url", camera.url),
                ("sub", "sub_url", camera.sub_url),
            )
            if url
        ]
    streams = (("main", config.video.main), ("sub", config.video.sub))
    return [RtspTarget(name, url, f"video.{name}") for name, url in streams if url]


def stream_address(url: str) -> str:
    """`host:port` of an RTSP URL (never its user or password), or "" for a bad URL."""
    try:
        return _Request.from_url(url).address
    except _Failure:
        return ""


def rtsp_targets(config: Config) -> list[tuple[str, str]]:
    """(target name, URL) of each RTSP target the device offers."""
    return [(target.name, target.url) for target in configured_targets(config)]


async def probe_all(targets: list[tuple[str, str]], timeout: float = 5.0) -> list[StreamProbe]:
    """`probe` every target at once; the results in the order of `targets`."""
    return list(await asyncio.gather(*(probe(name, url, timeout) for name, url in targets)))


async def probe(target: str, url: str, timeout: float = 5.0) -> StreamProbe:
    """DESCRIBE `url` within `timeout` seconds (connecting, authenticating, reading)."""
    try:
        request = _Request.from_url(url)
    except _Failure as failure:
        return StreamProbe(target, False, None, str(failure))
    progress = _Progress()
    try:
        async with asyncio.timeout(timeout):
            answer = await _describe(request, progress)
    except TimeoutError:
        return StreamProbe(target, False, None, progress.timed_out(request, timeout))
    except _Failure as failure:
        return StreamProbe(target, False, None, str(failure))
    except ssl.SSLError as exc:
        return StreamProbe(target, False, None, f"TLS failed: {exc.reason or exc}")
    except OSError as exc:
        return StreamProbe(target, False, None, _os_error(exc, request, progress))
    except UnicodeError:  # a host name that IDNA cannot encode
        return StreamProbe(target, False, None, f"cannot resolve {request.host}")
    return _result(target, request, answer)


class _Failure(Exception):
    """A reason the probe failed, already in words for a person (never the password)."""


@dataclass(frozen=True)
class _Request:
    scheme: str
    host: str
    port: int
    uri: str  # the URL without user and password: what the request line carries
    path: str  # shown in messages; not the query, which some cameras fill with credentials
    username: str | None
    password: str

    @classmethod
    def from_url(cls, url: str) -> _Request:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _Failure("not a valid rtsp:// URL (check its host and port)") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise _Failure("not an rtsp:// or rtsps:// URL with a host")
        netloc = parts.netloc.rpartition("@")[2]
        uri = parts._replace(netloc=netloc, fragment="").geturl()
        has_user = parts.username is not None
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port or DEFAULT_PORTS[scheme],
            uri=uri,
            path=parts.path or "/",
            username=unquote(parts.username or "") if has_user else None,
            password=unquote(parts.password or ""),
        )

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def message(self, cseq: int, authorization: str | None) -> bytes:
        lines = [
            f"DESCRIBE {self.uri} RTSP/1.0",
            f"CSeq: {cseq}",
            "Accept: application/sdp",
            f"User-Agent: camagent/{agent.__version__}",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def shown(self, text: str, limit: int = 80) -> str:
        """Text the server sent, safe to show: one short line, never the password."""
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        if self.password:
            text = text.replace(self.password, "***")
        return text if len(text) <= limit else text[: limit - 1] + "…"


class _Progress:
    """How far a probe got, so that a timeout says which step did not finish."""

    def __init__(self) -> None:
        self.connected = False

    def timed_out(self, request: _Request, timeout: float) -> str:
        if not self.connected:
            return f"no TCP connection to {request.address} within {timeout:g} s"
        return f"no answer within {timeout:g} s"


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # (lower-case name, value), in order
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


async def _describe(request: _Request, progress: _Progress) -> _Answer:
    answer = await _exchange(request, 1, None, progress)
    if answer.status != 401:
        return answer
    if request.username is None:
        raise _Failure("RTSP 401: the camera wants a user and password; put them in the URL")
    authorization = _authorization(request, answer.values("www-authenticate"))
    # A fresh connection: some servers close after a 401 without saying so, and neither
    # Basic nor a Digest nonce is bound to the connection.
    answer = await _exchange(request, 2, authorization, progress)
    if answer.status == 401:
        raise _Failure("RTSP 401: wrong user or password")
    return answer


async def _exchange(
    request: _Request, cseq: int, authorization: str | None, progress: _Progress
) -> _Answer:
    progress.connected = False
    reader, writer = await asyncio.open_connection(
        request.host, request.port, ssl=_tls_context() if request.scheme == "rtsps" else None
    )
    progress.connected = True
    try:
        writer.write(request.message(cseq, authorization))
        await writer.drain()
        return await _read_answer(reader)
    finally:
        await _close(writer)


def _tls_context() -> ssl.SSLContext:
    # No certificate verification: cameras serve RTSPS with self-signed certificates, so
    # verifying would fail every one of them. The probe only asks whether a stream
    # answers; the credentials go to whoever answers at the configured address, as they
    # do over plain rtsp://.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await writer.wait_closed()


async def _read_answer(reader: asyncio.StreamReader) -> _Answer:
    buffer = b""
    while (end := _header_end(buffer)) < 0:
        if not (buffer.startswith(b"RTSP/") or b"RTSP/".startswith(buffer)):
            raise _Failure(_not_rtsp(buffer))
        if len(buffer) > MAX_ANSWER:
            raise _Failure(f"answer too large (over {MAX_ANSWER // 1024} KiB)")
        chunk = await reader.read(_READ_CHUNK)
        if not chunk:
            raise _Failure(
                "the answer was cut short" if buffer else "the server closed the connection"
            )
        buffer += chunk
    status, reason, headers = _parse_head(buffer[:end])
    length = _content_length(headers)
    if end + length > MAX_ANSWER:
        raise _Failure(f"answer too large (over {MAX_ANSWER // 1024} KiB)")
    body = buffer[end : end + length]
    if len(body) < length:
        try:
            body += await reader.readexactly(length - len(body))
        except asyncio.IncompleteReadError:
            raise _Failure("the answer was cut short") from None
    return _Answer(status, reason, headers, body)


def _header_end(buffer: bytes) -> int:
    """Where the body starts, or -1 (a bare LF ends lines too, as lenient clients allow)."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := buffer.find(sep)) >= 0]
    return min(ends, default=-1)


def _not_rtsp(answer: bytes) -> str:
    if answer.startswith(b"HTTP/"):
        return "not an RTSP server (an HTTP server answered: is the port right?)"
    return "not an RTSP server"


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    status_line, *lines = head.decode("latin-1").splitlines()
    match = _STATUS_LINE.fullmatch(status_line.strip())
    if match is None:
        raise _Failure(_not_rtsp(head))
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return int(match.group(1)), match.group(2) or "", headers


def _content_length(headers: list[tuple[str, str]]) -> int:
    value = next((v for k, v in headers if k == "content-length"), "0")
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise _Failure("not an RTSP server (a malformed Content-Length)")
    return int(value)


def _authorization(request: _Request, challenges: list[str]) -> str:
    parsed = [_parse_challenge(challenge) for challenge in challenges]
    for scheme, params in parsed:
        if scheme == "digest" and _digest_usable(params):
            return _digest(request, params)
    if any(scheme == "basic" for scheme, _ in parsed):
        return _basic(request)
    offered = ", ".join(challenge.split(" ", 1)[0] for challenge in challenges) or "none"
    raise _Failure(f"RTSP 401: the camera asks for an authentication camagent lacks ({offered})")


def _parse_challenge(challenge: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = challenge.strip().partition(" ")
    params = {}
    for name, value in _AUTH_PARAM.findall(rest):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name.lower()] = value
    return scheme.lower(), params


def _digest_usable(params: dict[str, str]) -> bool:
    algorithm = params.get("algorithm", "MD5").upper().removesuffix("-SESS")
    qops = _qops(params)
    return "nonce" in params and algorithm in _DIGESTS and (not qops or "auth" in qops)


def _qops(params: dict[str, str]) -> list[str]:
    return [qop.strip().lower() for qop in params.get("qop", "").split(",") if qop.strip()]


def _digest(request: _Request, params: dict[str, str]) -> str:
    """The Digest `Authorization` for a DESCRIBE of `request` (RFC 2617, RFC 7616)."""
    algorithm = params.get("algorithm", "MD5")
    hash_name = algorithm.upper().removesuffix("-SESS")
    digest = _DIGESTS[hash_name]

    def h(*parts: str) -> str:
        return str(digest(":".join(parts).encode()).hexdigest())

    username, realm, nonce = request.username or "", params.get("realm", ""), params["nonce"]
    cnonce = secrets.token_hex(8)
    ha1 = h(username, realm, request.password)
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(ha1, nonce, cnonce)
    ha2 = h("DESCRIBE", request.uri)
    fields = {"username": username, "realm": realm, "nonce": nonce, "uri": request.uri}
    if "auth" in _qops(params):
        fields["response"] = h(ha1, nonce, "00000001", cnonce, "auth", ha2)
        unquoted = {"algorithm": algorithm, "qop": "auth", "nc": "00000001"}
        fields["cnonce"] = cnonce
    else:
        fields["response"] = h(ha1, nonce, ha2)
        unquoted = {"algorithm": algorithm}
    if "opaque" in params:
        fields["opaque"] = params["opaque"]
    quoted = [f'{name}="{_quote(value)}"' for name, value in fields.items()]
    return "Digest " + ", ".join(quoted + [f"{name}={value}" for name, value in unquoted.items()])


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _basic(request: _Request) -> str:
    pair = f"{request.username or ''}:{request.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _os_error(exc: OSError, request: _Request, progress: _Progress) -> str:
    # A name with several addresses (localhost: ::1 and 127.0.0.1) that all refuse comes
    # as one OSError("Multiple exceptions: [Errno 111] …, [Errno 111] …") with no errno.
    codes = {int(code) for code in re.findall(r"\[Errno (\d+)\]", str(exc))} | {exc.errno}
    if codes - {None} == {errno.ECONNREFUSED}:
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {request.host}: {exc.strerror or exc}"
    if progress.connected:
        return f"the connection broke: {exc.strerror or exc}"
    return f"cannot connect to {request.address}: {exc.strerror or exc}"


def _result(target: str, request: _Request, answer: _Answer) -> StreamProbe:
    if answer.status != 200:
        return StreamProbe(target, False, None, _status_detail(request, answer))
    video = parse_sdp(answer.body.decode("utf-8", "replace"))
    if video is None:
        return StreamProbe(target, True, None, "RTSP 200, but the SDP has no video")
    if video.codec is None:
        detail = f"RTSP 200, video payload type {video.payload} without an a=rtpmap"
        return StreamProbe(target, True, None, detail)
    size = f" {video.size[0]}x{video.size[1]}" if video.size else ""
    return StreamProbe(target, True, video.codec, f"RTSP 200, {video.codec}{size}")


def _status_detail(request: _Request, answer: _Answer) -> str:
    code = answer.status
    if code == 404:
        return f"RTSP 404: no stream at {request.path}"
    if code == 403:
        return "RTSP 403: this user may not view the stream"
    if 300 <= code < 400 and (location := answer.header("location")):
        moved = request.shown(location.split("://", 1)[-1].rpartition("@")[2])
        return f"RTSP {code}: the stream moved to {moved} (put that in the URL)"
    return f"RTSP {code}: {request.shown(answer.reason) or 'no reason given'}"
