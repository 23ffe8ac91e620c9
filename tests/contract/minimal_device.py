"""A second camagent camera, written from the published contract alone.

Sources: docs/design.md §2.12 (wire formats), docs/api/openapi.yaml (`/v1/keys`,
`/v1/provisioning/poll`), docs/api/asyncapi.yaml (the control channel) and
docs/api/vectors.json (each step's bytes). It never imports `agent` or `cloud_mock`: if
it needs something those documents do not say, the documents are not done (issue 23).

Another style on purpose: synchronous, standard library plus `cryptography`, with its own
few lines of RFC 6455 instead of a WebSocket library, so that what the mock accepts from
it is what the RFC and the documents say, not what aiohttp happens to do.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_public_key

SALT_PREFIX = b"camagent-provisioning-v1|"
MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
TOKEN_FIELDS = ("v", "sub", "kind", "org", "api", "iat", "jti")


class DeviceError(Exception):
    """Something the contract forbids; the message says what."""


# --- §2.12, step by step (docs/api/vectors.json has each step's bytes) ---------------------


def canonical_id(device_id: str) -> str:
    """A MAC in lower case with `:`; any other ID as given (the test uses MACs)."""
    device_id = device_id.strip()
    if MAC.match(device_id):
        digits = re.sub("[:-]", "", device_id).lower()
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    return device_id


def derive_key(password: str, device_id: str) -> bytes:
    salt = SALT_PREFIX + device_id.encode("utf-8")
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


def proof(key: bytes, device_id: str, ts: int, nonce: str) -> str:
    message = f"{device_id}\n{ts}\n{nonce}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def unseal(key: bytes, device_id: str, sealed: str) -> str:
    raw = base64.b64decode(sealed, validate=True)
    try:
        plain = AESGCM(key).decrypt(raw[:12], raw[12:], device_id.encode("utf-8"))
    except InvalidTag:
        raise DeviceError("the sealed token does not open with K") from None
    return plain.decode("utf-8")


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise DeviceError("the token's payload repeats a key")
    return dict(pairs)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an origin `https://host[:port]` with an optional `/`."""
    parts = urllib.parse.urlsplit(url)
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.path not in ("", "/")
        or "?" in url
        or "#" in url
        or not parts.hostname
    ):
        raise DeviceError(f"{url!r} is not an https origin")
    return "https", parts.hostname.lower(), parts.port or 443


def verify_token(
    token: str, keys: list[Ed25519PublicKey], device_id: str, kind: str, cloud_url: str
) -> dict[str, Any]:
    """The claims of a token that one of `keys` signed for this device and this cloud."""
    parts = token.split(".")
    if len(parts) != 2:
        raise DeviceError("a token is payload.signature")
    payload, signature = _b64url(parts[0]), _b64url(parts[1])
    if not any(_verifies(key, signature, payload) for key in keys):
        raise DeviceError("no trusted key verifies the token")
    claims = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates)
    missing = [name for name in TOKEN_FIELDS if name not in claims]
    if missing:
        raise DeviceError(f"the token lacks {', '.join(missing)}")
    if claims["v"] != 1 or claims["sub"] != device_id or claims["kind"] != kind:
        raise DeviceError(f"the token is not a v1 token for this {kind}: {claims}")
    if origin(claims["api"]) != origin(cloud_url):
        raise DeviceError(f"the token's api {claims['api']!r} is not {cloud_url!r}")
    return dict(claims)


def _verifies(key: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


# --- the control channel: RFC 6455, client side, text and control frames only ---------------


class WebSocket:
    def __init__(self, sock: ssl.SSLSocket, leftover: bytes) -> None:
        self.sock = sock
        self.buffer = leftover
        self.close_code: int | None = None
        self.pings = 0  # answered, for a test to see the cloud's keep-alive work
        self.fragments = b""  # of a text message sent in several frames (RFC 6455 §5.4)
        self._send_lock = threading.Lock()

    @classmethod
    def connect(cls, url: str, path: str, token: str, context: ssl.SSLContext) -> WebSocket:
        _, host, port = origin(url)
        raw = socket.create_connection((host, port), timeout=10)
        sock = context.wrap_socket(raw, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        sock.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise DeviceError("the cloud closed the connection during the upgrade")
            head += chunk
        head, _, leftover = head.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        if lines[0].split(" ")[1:2] != ["101"]:
            raise DeviceError(f"the upgrade was refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise DeviceError("the cloud's Sec-WebSocket-Accept is wrong")
        return cls(sock, leftover)

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self._send_lock:
            self.sock.sendall(header + mask + masked)

    def send_json(self, message: dict[str, Any]) -> None:
        self._send(0x1, json.dumps(message).encode("utf-8"))

    def close(self, code: int = 1000) -> None:
        with contextlib.suppress(OSError):
            self._send(0x8, struct.pack("!H", code))
        self.sock.close()

    def _frame(self) -> tuple[int, bytes] | None:
        """(first header byte, payload) of one whole frame out of the buffer, or None (the
        buffer keeps a partial one)."""
        if len(self.buffer) < 2:
            return None
        first, second = self.buffer[0], self.buffer[1]
        if second & 0x80:
            raise DeviceError("a server must not mask its frames (RFC 6455 §5.1)")
        length, start = second & 0x7F, 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            (length,), start = struct.unpack("!H", self.buffer[2:4]), 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            (length,), start = struct.unpack("!Q", self.buffer[2:10]), 10
        if len(self.buffer) < start + length:
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return first, payload

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON message; None after `timeout` of silence or once closed."""
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            frame = self._frame()
            if frame is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    return None
                if not chunk:  # the connection ended without a close frame
                    self.close_code = 1006
                    self.sock.close()
                self.buffer += chunk
                continue
            first, payload = frame
            opcode, final = first & 0x0F, bool(first & 0x80)
            if opcode in (0x1, 0x0):  # a text message, or the next fragment of one
                self.fragments = (self.fragments if opcode == 0x0 else b"") + payload
                if not final:
                    continue
                message = json.loads(self.fragments.decode("utf-8"))
                return message if isinstance(message, dict) else {}
            if opcode == 0x9:
                self._send(0xA, payload)
                self.pings += 1
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                self.close(self.close_code if self.close_code < 5000 else 1000)
        return None


# --- the device ----------------------------------------------------------------------------


@dataclass
class MinimalDevice:
    url: str  # `[cloud] url`: the one cloud this camera trusts
    device_id: str
    password: str
    context: ssl.SSLContext
    kind: str = "camera"
    keys: list[Ed25519PublicKey] = field(default_factory=list)
    clock_offset: float = 0.0  # the cloud's Date minus ours
    token: str | None = None
    channel: WebSocket | None = None
    heartbeat_s: float = 30.0  # the cloud's hello may say otherwise
    key: bytes = field(init=False, repr=False)
    results: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.device_id = canonical_id(self.device_id)
        self.key = derive_key(self.password, self.device_id)

    def _http(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
        _, host, port = origin(self.url)
        connection = http.client.HTTPSConnection(host, port, context=self.context, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            connection.request(method, path, body=data, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
            date = answer.getheader("Date")
            if date:
                self.clock_offset = (
                    email.utils.parsedate_to_datetime(date).timestamp() - time.time()
                )
            return answer.status, content
        finally:
            connection.close()

    def fetch_keys(self) -> None:
        status, body = self._http("GET", "/v1/keys", None, 10)
        if status != 200:
            raise DeviceError(f"GET /v1/keys answered {status}")
        for entry in json.loads(body)["keys"]:
            key = load_pem_public_key(entry["pem"].encode("ascii"))
            if isinstance(key, Ed25519PublicKey):
                self.keys.append(key)

    def poll(self, wait: int = 0) -> str | None:
        """One poll; the verified token, or None (204)."""
        ts = int(time.time() + self.clock_offset)
        nonce = base64.b64encode(os.urandom(16)).decode()
        body = {
            "device_id": self.device_id,
            "ts": ts,
            "nonce": nonce,
            "proof": proof(self.key, self.device_id, ts, nonce),
            "wait": wait,
        }
        status, answer = self._http("POST", "/v1/provisioning/poll", body, wait + 15)
        if status == 204:
            return None
        if status != 200:
            raise DeviceError(f"the poll answered {status}: {answer[:200]!r}")
        token = unseal(self.key, self.device_id, json.loads(answer)["sealed_token"])
        verify_token(token, self.keys, self.device_id, self.kind, self.url)
        self.token = token
        return token

    def connect(self) -> dict[str, Any]:
        """Open the control channel and say hello; the cloud's hello."""
        if self.token is None:
            raise DeviceError("no token")
        self.channel = WebSocket.connect(self.url, "/v1/devices/ws", self.token, self.context)
        hello = {
            "type": "hello",
            "device_id": self.device_id,
            "kind": self.kind,
            "version": "minimal-device/1",
            "video": [],
        }
        self.channel.send_json(hello)
        answer = self.channel.receive(10)
        if not answer or answer.get("type") != "hello":
            raise DeviceError(
                f"expected the cloud's hello, got {answer!r} ({self.channel.close_code})"
            )
        self.heartbeat_s = float(answer.get("heartbeat_s", 30))
        return answer

    def serve(self, stop: threading.Event) -> int | None:
        """Hold the channel until the cloud closes it (its close code) or `stop` is set."""
        channel = self.channel
        assert channel is not None
        quiet_since = time.monotonic()
        while not stop.is_set() and channel.close_code is None:
            message = channel.receive(min(0.2, self.heartbeat_s))
            if message is None:
                if time.monotonic() - quiet_since >= self.heartbeat_s:
                    channel.send_json({"type": "heartbeat"})
                    quiet_since = time.monotonic()
                continue
            quiet_since = time.monotonic()
            if message.get("type") == "command":
                self._answer(channel, message)
        if channel.close_code == 4401:
            self.token = None  # revoked: forget it and provision again
        if channel.close_code is None:
            channel.close(1000)
        return channel.close_code

    def _answer(self, channel: WebSocket, command: dict[str, Any]) -> None:
        name = command.get("name")
        ok: bool = True
        data: Any = None
        if name == "ping":
            data = {"pong": True, "device_id": self.device_id, "ts": time.time()}
        elif name == "probe":
            data = {"streams": []}  # a camera without video has no RTSP target to describe
        else:
            ok, data = False, f"this minimal device does not do {name!r}"
        result = {"type": "result", "id": command.get("id"), "ok": ok, "data": data}
        self.results.append(result)
        channel.send_json(result)
