"""HTTP Digest authentication, server side (RFC 7616): `algorithm=SHA-256`, `qop=auth`.

Pure functions and one small bookkeeping class; the HTTP handler feeds them the header,
the method, the request-target and the time. Nonces are stateless: the time they were
made, some randomness, and an HMAC over both under a secret made at every start, so a
nonce from another boot or one that was tampered with is simply unknown. The only state
kept is the highest nonce-count seen per nonce, which is what stops a replayed request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

REALM = "camagent"
USER = "admin"
ALGORITHM = "SHA-256"
QOP = "auth"
NONCE_TTL_S = 300.0
MAX_HEADER_LEN = 4096  # a real Authorization header is ~400 bytes
MAX_TRACKED_NONCES = 1024

_REQUIRED = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
# auth-param = token BWS "=" BWS ( token / quoted-string ), separated by commas
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)')
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NC = re.compile(r"[0-9a-fA-F]{8}")


class Verdict(Enum):
    OK = "ok"
    MISSING = "missing"  # no Authorization header: the first leg of the handshake
    MALFORMED = "malformed"  # not a Digest header we can read, or not for this request
    UNKNOWN_NONCE = "unknown_nonce"  # not made by this boot (or tampered with)
    STALE = "stale"  # right credentials, expired nonce: the client retries at once
    REPLAY = "replay"  # right credentials, nonce-count already used
    WRONG = "wrong"  # wrong user or password: the only verdict that counts as a failure

    @property
    def is_failure(self) -> bool:
        return self is Verdict.WRONG


class DigestError(ValueError):
    """An Authorization header that is not a readable Digest response."""


def sha256_hex(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def expected_response(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = QOP,
) -> str:
    """RFC 7616 §3.4.1 with qop=auth: KD(H(A1), nonce:nc:cnonce:qop:H(A2))."""
    ha1 = sha256_hex(f"{username}:{realm}:{password}")
    ha2 = sha256_hex(f"{method.upper()}:{uri}")
    return sha256_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_authorization(header: str) -> dict[str, str]:
    """`Digest k=v, k="v", …` → {k: v}. Raises DigestError for anything else."""
    if len(header) > MAX_HEADER_LEN:
        raise DigestError("Authorization header too long")
    if not header.isascii():
        # Every parameter we accept is ASCII; aiohttp hands undecodable bytes over as
        # surrogates, which would not even encode back.
        raise DigestError("Authorization header is not ASCII")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError("not a Digest Authorization header")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            raise DigestError(f"cannot read the Digest parameters at {rest[pos : pos + 20]!r}")
        key = match.group(1).lower()
        if key in params:
            raise DigestError(f"Digest parameter {key} appears twice")
        quoted, bare = match.group(2), match.group(3)
        params[key] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return params


def challenge(nonce: str, *, stale: bool = False) -> str:
    """The WWW-Authenticate value (aiohttp's DigestAuthMiddleware reads exactly this)."""
    parts = [
        f'realm="{REALM}"',
        f'qop="{QOP}"',
        f"algorithm={ALGORITHM}",
        f'nonce="{nonce}"',
        "charset=UTF-8",
        "userhash=false",
    ]
    if stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


class NonceStatus(Enum):
    FRESH = "fresh"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass
class NonceBook:
    """Makes and checks nonces; remembers the highest nonce-count used with each."""

    secret: bytes
    ttl_s: float = NONCE_TTL_S

    def __post_init__(self) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()

    @classmethod
    def for_this_boot(cls, ttl_s: float = NONCE_TTL_S) -> NonceBook:
        return cls(secrets.token_bytes(32), ttl_s)

    def make(self, now: float) -> str:
        body = struct.pack(">d", now) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(body + self._sign(body)).decode().rstrip("=")

    def status(self, nonce: str, now: float) -> NonceStatus:
        made = self._made_at(nonce)
        if made is None:
            return NonceStatus.UNKNOWN
        # A nonce from the future means the clock stepped back: treat it as expired.
        return NonceStatus.FRESH if 0 <= now - made <= self.ttl_s else NonceStatus.EXPIRED

    def use(self, nonce: str, nc: int) -> bool:
        """Record nonce-count `nc`; False when it is not above every count used before."""
        if nc <= self._counts.get(nonce, 0):
            return False
        self._counts[nonce] = nc
        self._counts.move_to_end(nonce)
        while len(self._counts) > MAX_TRACKED_NONCES:
            # The oldest nonce is dropped; it expires soon anyway, and a replay of it then
            # would still need a fresh nonce to pass.
            self._counts.popitem(last=False)
        return True

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self.secret, body, hashlib.sha256).digest()[:16]

    def _made_at(self, nonce: str) -> float | None:
        if len(nonce) != 43:  # 32 bytes in unpadded base64url
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except ValueError:
            return None
        body, mac = raw[:16], raw[16:]
        if len(raw) != 32 or not hmac.compare_digest(mac, self._sign(body)):
            return None
        made: float = struct.unpack(">d", body[:8])[0]
        return made


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request-target as sent: path and query, still percent-encoded


def verify(
    header: str | None, request: Request, password: str, book: NonceBook, now: float
) -> Verdict:
    """Judge one request's Authorization header."""
    if header is None:
        return Verdict.MISSING
    try:
        params = parse_authorization(header)
    except DigestError:
        return Verdict.MALFORMED
    if not _well_formed(params, request):
        return Verdict.MALFORMED
    nonce = params["nonce"]
    status = book.status(nonce, now)
    if status is NonceStatus.UNKNOWN:
        return Verdict.UNKNOWN_NONCE
    expected = expected_response(
        username=USER,
        realm=REALM,
        password=password,
        method=request.method,
        uri=params["uri"],
        nonce=nonce,
        nc=params["nc"],
        cnonce=params["cnonce"],
    )
    # Both comparisons always run, so the answer time says nothing about which failed.
    user_ok = hmac.compare_digest(params["username"].encode(), USER.encode())
    response_ok = hmac.compare_digest(params["response"].lower().encode(), expected.encode())
    if not (user_ok and response_ok):
        return Verdict.WRONG
    if status is NonceStatus.EXPIRED:
        return Verdict.STALE
    if not book.use(nonce, int(params["nc"], 16)):
        return Verdict.REPLAY
    return Verdict.OK


def _well_formed(params: dict[str, str], request: Request) -> bool:
    if any(key not in params for key in _REQUIRED):
        return False
    if params.get("algorithm", "MD5").upper() != ALGORITHM:
        return False
    if params.get("userhash", "false").lower() != "false":
        return False
    return (
        params["realm"] == REALM
        and params["qop"] == QOP
        and params["uri"] == request.target
        and _NC.fullmatch(params["nc"]) is not None
        and _HEX64.fullmatch(params["response"].lower()) is not None
        and 0 < len(params["cnonce"]) <= 256
    )
