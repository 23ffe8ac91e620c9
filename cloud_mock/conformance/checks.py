"""The checks: the device side of the protocol, played against a cloud.

The kit behaves as a camera and as an NVR would (the agent's own wire format and token
codec: agent/provisioning/wire.py, agent/token_codec.py), and as a hostile or confused
device would, and records for every rule of report.RULES whether the cloud kept it.
Time comes from the cloud's `Date` header, as on a device without a clock, so a cloud
whose clock differs from ours is judged by its own clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import TokenError, WireError
from agent.nvr import activation_code
from agent.provisioning.wire import PollRequest, derive_key, unseal_token
from agent.token_codec import (
    TokenClaims,
    load_public_key,
    origin,
    parse_claims,
    sign_token,
    split_token,
)
from cloud_mock.conformance.cloud_side import CloudSide, CloudSideError, Unsupported
from cloud_mock.conformance.documents import ChannelContract, HttpContract
from cloud_mock.conformance.report import RULES, Outcome, Report, Result

POLL_PATH = "/v1/provisioning/poll"
WS_PATH = "/v1/devices/ws"
TS_WINDOW_S = 300
OUTSIDE_S = 330  # beyond the window by more than Date's 1 s resolution and our latency
INSIDE_S = 240
LONG_POLL_WAIT_S = 20
HELD_BEFORE_ADD_S = 1.0  # let the poll reach the cloud and be held before the add
WAKE_SLACK_S = 2.0  # a held poll answers within this of the add (or activation) finishing
ANSWER_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = LONG_POLL_WAIT_S + 15
SILENCE_S = 0.5  # how long the cloud must stay silent before the device's hello
DEFAULT_TIMING_SAMPLES = 15
DEFAULT_TIMING_TOLERANCE_S = 0.025


class Failed(Exception):
    """A rule is broken; `rule` names it."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Options:
    timing_samples: int = DEFAULT_TIMING_SAMPLES
    timing_tolerance_s: float = DEFAULT_TIMING_TOLERANCE_S


def random_mac() -> str:
    # Locally administered, unicast: never a real vendor's camera.
    octets = [0x02] + [secrets.randbelow(256) for _ in range(5)]
    return ":".join(f"{o:02x}" for o in octets)


@dataclass
class Conformance:
    session: aiohttp.ClientSession
    url: str
    cloud: CloudSide
    options: Options = field(default_factory=Options)
    report: Report = field(init=False)
    http: HttpContract = field(default_factory=HttpContract)
    channel: ChannelContract = field(default_factory=ChannelContract)
    keys: list[Ed25519PublicKey] = field(default_factory=list)
    clock_offset: float = 0.0  # the cloud's Date minus our clock
    http_problems: list[str] = field(default_factory=list)
    frame_problems: list[str] = field(default_factory=list)
    answers_checked: int = 0
    frames_checked: int = 0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.report = Report(self.url)

    # --- recording -----------------------------------------------------------------

    def passed(self, rule: str, detail: str = "", seconds: float = 0.0) -> None:
        self.report.add(Result(rule, Outcome.PASS, detail, seconds))

    def failed(self, rule: str, detail: str) -> None:
        self.report.add(Result(rule, Outcome.FAIL, detail))

    def skipped(self, rule: str, detail: str) -> None:
        self.report.add(Result(rule, Outcome.SKIP, detail))

    async def step(self, rule: str, check: Callable[[], Awaitable[Any]]) -> Any:
        """Run one check; what it raises becomes the result of its rule (or of `rule`)."""
        started = time.monotonic()
        try:
            value = await check()
        except Failed as failure:
            self.failed(failure.rule, failure.detail)
            return None
        except Unsupported as why:
            self.skipped(rule, str(why))
            return None
        except CloudSideError as error:
            self.failed(rule, f"cloud-side action failed: {error}")
            return None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            self.failed(rule, f"{type(error).__name__}: {error}")
            return None
        if rule not in {r.rule for r in self.report.results}:
            self.passed(rule, seconds=time.monotonic() - started)
        return value

    # --- HTTP as a device ----------------------------------------------------------

    async def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        started = time.monotonic()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        async with self.session.request(
            method,
            self.url + path,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
        ) as response:
            data = await response.read()
            answer = Answer(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                data,
                time.monotonic() - started,
            )
        self._check_schema(method, path, answer)
        self._note_date(answer)
        return answer

    def _check_schema(self, method: str, path: str, answer: Answer) -> None:
        op = self.http.operation(method, path)
        if op is None:
            return
        self.answers_checked += 1
        problems = self.http.check_response(op, answer.status, answer.headers, answer.body)
        if problems:
            self.http_problems.append(f"{method} {path} → {answer.status}: {'; '.join(problems)}")

    def _note_date(self, answer: Answer) -> None:
        date = answer.headers.get("date")
        if date is None:
            return
        try:
            parsed = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        self.clock_offset = parsed.timestamp() - time.time()

    def cloud_now(self) -> int:
        return int(time.time() + self.clock_offset)

    async def poll(
        self, key: bytes, device_id: str, *, wait: int = 0, ts: int | None = None
    ) -> tuple[Answer, bytes]:
        request = PollRequest.build(key, device_id, self.cloud_now() if ts is None else ts, wait)
        body = json.dumps(request.to_json()).encode()
        return await self.request("POST", POLL_PATH, body), body

    def open_token(self, rule: str, answer: Answer, key: bytes, device_id: str) -> str:
        if answer.status != 200:
            raise Failed(rule, f"expected 200 with a sealed token, got {answer.status}")
        data = answer.json()
        sealed = data.get("sealed_token") if isinstance(data, dict) else None
        if not isinstance(sealed, str):
            raise Failed(rule, "the 200 answer has no sealed_token")
        try:
            return unseal_token(key, device_id, sealed)
        except WireError as error:
            raise Failed(rule, f"the sealed token does not open with K: {error}") from None

    # --- the run -------------------------------------------------------------------

    async def run(self) -> Report:
        await self.step("keys.published", self.check_keys)
        await self.step("prov.unknown-no-token", self.check_unknown_device)
        await self.step("prov.malformed-400", self.check_malformed)
        camera = await self.step("prov.token-delivered", self.check_token_delivered)
        dependents = (
            "token.format",
            "prov.replay-refused",
            "prov.clock-window",
            "prov.indistinguishable",
            "channel.hello-first",
        )
        if camera is not None:
            device_id, key, token, body = camera
            await self.step("token.format", lambda: self.check_token(token, device_id, "camera"))
            await self.step("prov.replay-refused", lambda: self.check_replay(body))
            await self.step("prov.clock-window", lambda: self.check_window(key, device_id))
            await self.step(
                "prov.indistinguishable", lambda: self.check_indistinguishable(device_id)
            )
            from cloud_mock.conformance import identity_checks  # it imports this module

            await identity_checks.run(self, device_id, key, token)
            await self.step("channel.hello-first", lambda: self.check_channel(device_id, token))
        else:
            for rule in dependents:
                self.skipped(rule, "not checked: no camera token (see prov.token-delivered)")
        await self.step("channel.bad-token-4401", self.check_bad_token)
        await self.step("prov.long-poll-wakeup", self.check_long_poll)
        await self.step("prov.retry-after", self.check_retry_after)
        await self.step("nvr.register-code", self.check_nvr_activation)
        await self.step("nvr.registration-token", self.check_registration_token)
        from cloud_mock.conformance import tunnel_checks  # it imports this module

        await tunnel_checks.run(self)
        self.conclude_passive()
        return self.report

    def conclude_passive(self) -> None:
        if self.http_problems:
            self.failed("http.schema", " | ".join(self.http_problems[:3]))
        else:
            self.passed("http.schema", f"{self.answers_checked} answers match openapi.yaml")
        if self.frame_problems:
            self.failed("channel.messages", " | ".join(self.frame_problems[:3]))
        elif self.frames_checked:
            self.passed("channel.messages", f"{self.frames_checked} frames match asyncapi.yaml")
        else:
            self.skipped("channel.messages", "no frame received")
        seen = {r.rule for r in self.report.results}
        for rule in RULES:
            if rule.id not in seen:
                self.skipped(rule.id, "not reached: an earlier check of its flow failed")

    # --- keys, unknown devices, malformed polls ------------------------------------

    async def check_keys(self) -> None:
        answer = await self.request("GET", "/v1/keys")
        data = answer.json()
        if answer.status != 200 or not isinstance(data, dict):
            raise Failed("keys.published", f"GET /v1/keys answered {answer.status}")
        for entry in data.get("keys") or []:
            if isinstance(entry, dict) and isinstance(entry.get("pem"), str):
                try:
                    self.keys.append(load_public_key(entry["pem"].encode(), "GET /v1/keys"))
                except TokenError as error:
                    raise Failed("keys.published", str(error)) from None
        if not self.keys:
            raise Failed("keys.published", "GET /v1/keys lists no Ed25519 public key")

    async def check_unknown_device(self) -> None:
        answer, _ = await self.poll(os.urandom(32), random_mac())
        date = answer.headers.get("date")
        if date is None:
            self.failed("prov.date-header", "a poll answer has no Date header")
        else:
            try:
                email.utils.parsedate_to_datetime(date)
                self.passed("prov.date-header", f"Date: {date}")
            except (TypeError, ValueError):
                self.failed("prov.date-header", f"Date {date!r} is not an HTTP date")
        if answer.status != 204 or answer.body:
            raise Failed(
                "prov.unknown-no-token",
                f"expected 204 without a body, got {answer.status} with {len(answer.body)} B",
            )

    async def check_malformed(self) -> None:
        key, device_id = os.urandom(32), random_mac()
        good = PollRequest.build(key, device_id, self.cloud_now(), 0).to_json()
        bad: list[tuple[str, bytes]] = [
            ("an empty body", b""),
            ("text that is not JSON", b"not json"),
            ("a JSON array", b"[]"),
            ("no proof", json.dumps({k: v for k, v in good.items() if k != "proof"}).encode()),
            ("ts as text", json.dumps({**good, "ts": "now"}).encode()),
            ("an enormous ts", json.dumps({**good, "ts": 10**309}).encode()),
            ("a negative wait", json.dumps({**good, "wait": -1}).encode()),
            ("a nonce that is not base64", json.dumps({**good, "nonce": "%%%"}).encode()),
            ("a device_id that is a number", json.dumps({**good, "device_id": 7}).encode()),
            ("deep nesting", b"[" * 3000 + b"]" * 3000),
            ("a 1 MiB body", b'{"device_id": "' + b"a" * (1 << 20) + b'"}'),
        ]
        wrong = []
        for what, body in bad:
            answer = await self.request("POST", POLL_PATH, body)
            if answer.status not in (400, 413):
                wrong.append(f"{what} → {answer.status}")
        if wrong:
            raise Failed("prov.malformed-400", "expected 400 or 413: " + ", ".join(wrong))

    # --- a camera's token ----------------------------------------------------------

    async def check_token_delivered(self) -> tuple[str, bytes, str, bytes]:
        device_id, password = random_mac(), secrets.token_urlsafe(12)
        await self.cloud.add_device(device_id, password)
        key = await asyncio.to_thread(derive_key, password, device_id)
        answer, body = await self.poll(key, device_id)
        token = self.open_token("prov.token-delivered", answer, key, device_id)
        return device_id, key, token, body

    def verify_token(self, prefix: str, token: str, device_id: str, kind: str) -> TokenClaims:
        """The token rules, each recorded on its own (`prefix` "token" or "nvr")."""

        def rule(name: str) -> str:
            return f"token.{name}" if prefix == "token" else "nvr.token"

        try:
            claims = parse_claims(token)
            payload, signature = split_token(token)
        except TokenError as error:
            raise Failed(rule("format"), str(error)) from None
        if prefix == "token":
            self.passed("token.format", f"v{claims.v}, jti {claims.jti[:12]}…")
        if not any(_verifies(key, signature, payload) for key in self.keys):
            raise Failed(rule("signature"), "the signature verifies with no key of GET /v1/keys")
        checks = (
            ("sub", claims.sub == device_id, f"sub is {claims.sub!r}, the device is {device_id!r}"),
            ("kind", claims.kind == kind, f"kind is {claims.kind!r}, the device is a {kind}"),
            (
                "api",
                origin(claims.api) == origin(self.url) and origin(claims.api)[0] == "https",
                f"api is {claims.api!r}, the cloud is {self.url!r}",
            ),
        )
        failures = [(name, why) for name, ok, why in checks if not ok]
        if prefix == "token":
            self.passed("token.signature", "Ed25519, a key of GET /v1/keys")
            for name, ok, why in checks:
                if ok:
                    self.passed(f"token.{name}")
                else:
                    self.failed(f"token.{name}", why)
        elif failures:
            raise Failed("nvr.token", "; ".join(why for _, why in failures))
        return claims

    async def check_token(self, token: str, device_id: str, kind: str) -> None:
        self.verify_token("token", token, device_id, kind)

    async def check_replay(self, body: bytes) -> None:
        answer = await self.request("POST", POLL_PATH, body)
        if answer.status == 200:
            raise Failed("prov.replay-refused", "the replayed poll got 200 and a token")
        if answer.status != 204:
            raise Failed("prov.replay-refused", f"expected 204, got {answer.status}")

    async def check_window(self, key: bytes, device_id: str) -> None:
        wrong = []
        for offset, expected in (
            (-OUTSIDE_S, 204),
            (OUTSIDE_S, 204),
            (-INSIDE_S, 200),
            (INSIDE_S, 200),
        ):
            answer, _ = await self.poll(key, device_id, ts=self.cloud_now() + offset)
            if answer.status != expected:
                wrong.append(f"ts {offset:+d} s → {answer.status} (expected {expected})")
        if wrong:
            raise Failed(
                "prov.clock-window", f"±{TS_WINDOW_S} s of the Date header: " + ", ".join(wrong)
            )

    async def check_indistinguishable(self, device_id: str) -> None:
        """A wrong proof for a device that has a token vs a device nobody added."""
        unknown = random_mac()
        wrong_key = os.urandom(32)
        timings: dict[str, list[float]] = {"wrong proof": [], "unknown device": []}
        shapes: dict[str, set[str]] = {"wrong proof": set(), "unknown device": set()}
        for _ in range(self.options.timing_samples):
            for what, dev in (("wrong proof", device_id), ("unknown device", unknown)):
                answer, _ = await self.poll(wrong_key, dev)
                timings[what].append(answer.seconds)
                headers = {k: v for k, v in answer.headers.items() if k != "date"}
                shapes[what].add(f"{answer.status} {sorted(headers.items())} {answer.body!r}")
        if shapes["wrong proof"] != shapes["unknown device"] or len(shapes["wrong proof"]) != 1:
            raise Failed(
                "prov.indistinguishable",
                f"answers differ: wrong proof {sorted(shapes['wrong proof'])[:2]} vs unknown "
                f"device {sorted(shapes['unknown device'])[:2]}",
            )
        medians = {what: statistics.median(values) for what, values in timings.items()}
        gap = abs(medians["wrong proof"] - medians["unknown device"])
        detail = (
            f"medians {medians['wrong proof'] * 1000:.1f} vs "
            f"{medians['unknown device'] * 1000:.1f} ms over {self.options.timing_samples} "
            f"polls each (tolerance {self.options.timing_tolerance_s * 1000:g} ms)"
        )
        if gap > self.options.timing_tolerance_s:
            raise Failed("prov.indistinguishable", "timing differs: " + detail)
        self.passed("prov.indistinguishable", detail)

    async def check_long_poll(self) -> None:
        device_id, password = random_mac(), secrets.token_urlsafe(12)
        key = await asyncio.to_thread(derive_key, password, device_id)
        held = asyncio.create_task(self.poll(key, device_id, wait=LONG_POLL_WAIT_S))
        try:
            await asyncio.sleep(HELD_BEFORE_ADD_S)
            if held.done():
                answer, _ = held.result()
                raise Failed(
                    "prov.long-poll-wakeup",
                    f"a poll with wait={LONG_POLL_WAIT_S} answered {answer.status} at once: "
                    "no long-poll",
                )
            await self.cloud.add_device(device_id, password)
            added = time.monotonic()
            answer, _ = await asyncio.wait_for(held, LONG_POLL_WAIT_S + 5)
        finally:
            held.cancel()
        late = time.monotonic() - added
        self.open_token("prov.long-poll-wakeup", answer, key, device_id)
        if late > WAKE_SLACK_S:
            raise Failed(
                "prov.long-poll-wakeup",
                f"answered {late:.1f} s after the add (at most {WAKE_SLACK_S:g} s)",
            )
        self.passed("prov.long-poll-wakeup", f"token {late * 1000:.0f} ms after the add")

    async def check_retry_after(self) -> None:
        await self.cloud.overload()
        answer, _ = await self.poll(os.urandom(32), random_mac())
        if answer.status not in (429, 503):
            raise Failed("prov.retry-after", f"expected 429 or 503, got {answer.status}")
        value = answer.headers.get("retry-after", "")
        if not value.isdigit():
            raise Failed("prov.retry-after", f"{answer.status} with Retry-After {value!r}")
        self.passed("prov.retry-after", f"{answer.status}, Retry-After: {value}")

    # --- the control channel -------------------------------------------------------

    async def _connect(self, token: str) -> Link | int:
        """The channel, or the HTTP status that refused the upgrade."""
        try:
            ws = await self.session.ws_connect(
                self.url + WS_PATH,
                headers={"Authorization": f"Bearer {token}"},
                timeout=_ws_timeout(),
            )
        except aiohttp.WSServerHandshakeError as error:
            return error.status
        return Link(ws, self._note_frame)

    def _note_frame(self, frame: str) -> None:
        self.frames_checked += 1
        problems = self.channel.check_frame("cloud", frame)
        if problems:
            self.frame_problems.append(f"{frame[:120]}: {'; '.join(problems)}")

    async def _closed_with(self, token: str, first: dict[str, Any] | None) -> int | str:
        """Connect with `token`, send `first`, and say how the cloud ended it."""
        ws = await self._connect(token)
        if isinstance(ws, int):
            return f"HTTP {ws}"
        try:
            if first is not None:
                await ws.send_json(first)
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while (left := deadline - time.monotonic()) > 0:
                message = await ws.next(left)
                if isinstance(message, tuple):
                    return int(message[1] or 0)
            return "still open"
        finally:
            await ws.close()

    def _hello(self, device_id: str, kind: str) -> dict[str, Any]:
        return {"type": "hello", "device_id": device_id, "kind": kind, "version": "conformance"}

    async def _greet(self, rule: str, token: str, device_id: str, kind: str) -> Link:
        ws = await self._connect(token)
        if isinstance(ws, int):
            raise Failed(rule, f"the upgrade was refused with HTTP {ws}")
        early = await ws.next(SILENCE_S)
        if early is not None:
            await ws.close()
            raise Failed(rule, f"the cloud spoke before the device's hello: {early!r}")
        await ws.send_json(self._hello(device_id, kind))
        answer = await ws.next(ANSWER_TIMEOUT_S)
        if not isinstance(answer, dict) or answer.get("type") != "hello":
            await ws.close()
            raise Failed(rule, f"expected the cloud's hello, got {answer!r}")
        return ws

    async def check_channel(self, device_id: str, token: str) -> None:
        ending = await self._closed_with(token, {"type": "heartbeat"})
        if ending != 4400:
            raise Failed(
                "channel.hello-first",
                f"a first message that is not hello should be refused with 4400, got {ending}",
            )
        ws = await self._greet("channel.hello-first", token, device_id, "camera")
        try:
            self.passed("channel.hello-first", "silent until the hello; answered it")
            await self.step("channel.heartbeat", lambda: self._heartbeat(ws))
            await self.step("channel.command", lambda: self._command(ws, device_id))
            await self.step("channel.revoked-4401", lambda: self._revocation(ws, device_id, token))
        finally:
            await ws.close()

    async def _heartbeat(self, ws: Link) -> None:
        await ws.send_json({"type": "heartbeat"})
        answer = await ws.next(ANSWER_TIMEOUT_S)
        if not isinstance(answer, dict) or answer.get("type") != "heartbeat":
            raise Failed("channel.heartbeat", f"expected a heartbeat back, got {answer!r}")

    async def _command(self, ws: Link, device_id: str) -> None:
        sent = asyncio.create_task(self.cloud.send_command(device_id, "ping"))
        try:
            command = await ws.next(ANSWER_TIMEOUT_S)
            if sent.done() and sent.exception() is not None:
                await sent
            if not isinstance(command, dict) or command.get("type") != "command":
                raise Failed("channel.command", f"expected a command, got {command!r}")
            if command.get("name") != "ping" or not isinstance(command.get("id"), str):
                raise Failed("channel.command", f"not the ping sent: {command!r}")
            marker = secrets.token_hex(8)
            await ws.send_json(
                {"type": "result", "id": command["id"], "ok": True, "data": {"pong": marker}}
            )
            outcome = await asyncio.wait_for(sent, ANSWER_TIMEOUT_S)
        finally:
            sent.cancel()
        if isinstance(outcome, dict) and outcome.get("data") != {"pong": marker}:
            raise Failed("channel.command", f"the cloud reported {outcome!r}, not our result")

    async def _revocation(self, ws: Link, device_id: str, token: str) -> None:
        await self.cloud.revoke_device(device_id)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        ending: Any = "still open"
        while (left := deadline - time.monotonic()) > 0:
            message = await ws.next(left)
            if isinstance(message, tuple):
                ending = message[1]
                break
        if ending != 4401:
            raise Failed("channel.revoked-4401", f"the open channel ended with {ending}, not 4401")
        again = await self._closed_with(token, self._hello(device_id, "camera"))
        if again not in (4401, "HTTP 401"):
            raise Failed(
                "channel.revoked-4401", f"the revoked token reconnected: ended with {again}"
            )

    async def check_bad_token(self) -> None:
        forged = sign_token(
            {
                "v": 1,
                "sub": random_mac(),
                "kind": "camera",
                "org": "conformance",
                "api": self.url,
                "iat": self.cloud_now(),
                "jti": secrets.token_hex(16),
            },
            Ed25519PrivateKey.generate(),
        )
        ending = await self._closed_with(forged, self._hello(parse_claims(forged).sub, "camera"))
        if ending not in (4401, "HTTP 401"):
            raise Failed("channel.bad-token-4401", f"a forged token's channel ended with {ending}")

    # --- NVRs ----------------------------------------------------------------------

    async def check_nvr_activation(self) -> None:
        device_id, code = random_mac(), activation_code.generate()
        secret = os.urandom(32)
        body = {
            "device_id": device_id,
            "code": code,
            "secret": base64.b64encode(secret).decode(),
            "name": "conformance NVR",
            "version": "conformance",
            "checks": [{"name": "conformance", "status": "ok", "detail": "", "fix": ""}],
        }
        answer = await self.request("POST", "/v1/nvr/activations", json.dumps(body).encode())
        if answer.status != 201 or (answer.json() or {}).get("code") != code:
            raise Failed("nvr.register-code", f"expected 201 with the code, got {answer.status}")
        self.passed("nvr.register-code", code)
        token = await self.step(
            "nvr.held-poll-answered", lambda: self._held(device_id, secret, code)
        )
        if token is None:
            for rule in ("nvr.only-registrant", "nvr.token", "nvr.channel"):
                self.skipped(rule, "not checked: no NVR token (see nvr.held-poll-answered)")
            return
        await self.step("nvr.only-registrant", lambda: self._only_registrant(device_id))
        await self.step("nvr.token", lambda: self._nvr_token(token, device_id))
        await self.step("nvr.channel", lambda: self._nvr_channel(token, device_id))

    async def _held(self, device_id: str, secret: bytes, code: str) -> str:
        held = asyncio.create_task(self.poll(secret, device_id, wait=LONG_POLL_WAIT_S))
        try:
            await asyncio.sleep(HELD_BEFORE_ADD_S)
            if held.done():
                answer, _ = held.result()
                raise Failed(
                    "nvr.held-poll-answered", f"the NVR's poll answered {answer.status} at once"
                )
            await self.cloud.activate_code(code)
            activated = time.monotonic()
            answer, _ = await asyncio.wait_for(held, LONG_POLL_WAIT_S + 5)
        finally:
            held.cancel()
        late = time.monotonic() - activated
        token = self.open_token("nvr.held-poll-answered", answer, secret, device_id)
        if late > WAKE_SLACK_S:
            raise Failed("nvr.held-poll-answered", f"answered {late:.1f} s after the activation")
        self.passed("nvr.held-poll-answered", f"token {late * 1000:.0f} ms after the activation")
        return token

    async def _only_registrant(self, device_id: str) -> None:
        answer, _ = await self.poll(os.urandom(32), device_id)
        if answer.status != 204:
            raise Failed(
                "nvr.only-registrant", f"a poll with another secret got {answer.status}, not 204"
            )

    async def _nvr_token(self, token: str, device_id: str) -> None:
        self.verify_token("nvr", token, device_id, "nvr")

    async def _nvr_channel(self, token: str, device_id: str) -> None:
        ws = await self._greet("nvr.channel", token, device_id, "nvr")
        await ws.close()

    async def check_registration_token(self) -> None:
        secret = await self.cloud.registration_token()
        device_id = random_mac()
        body = {
            "token": secret,
            "device_id": device_id,
            # The NVR's own secret (the one its codes carry): the link keeps its hash.
            "secret": base64.b64encode(os.urandom(32)).decode(),
            "name": "conformance",
            "checks": [],
        }
        answer = await self.request("POST", "/v1/nvr/register", json.dumps(body).encode())
        data = answer.json() or {}
        if answer.status != 201 or not isinstance(data.get("token"), str):
            raise Failed("nvr.registration-token", f"expected 201 with a token: {answer.status}")
        if isinstance(data.get("registrator_id"), str):
            self.cloud.registrators.append(data["registrator_id"])
        try:
            self.verify_token("nvr", data["token"], device_id, "nvr")
        except Failed as failure:
            raise Failed("nvr.registration-token", failure.detail) from None
        again = {**body, "device_id": random_mac()}
        answer = await self.request("POST", "/v1/nvr/register", json.dumps(again).encode())
        if answer.status != 409:
            raise Failed(
                "nvr.registration-token", f"a second use answered {answer.status}, not 409"
            )


class Link:
    """One channel, read by one task that never times out (a `receive(timeout=...)` that
    expires sets aiohttp's close code to 1006), and the cloud's close code taken from its
    close frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_frame: Callable[[str], None]):
        self.ws = ws
        self._on_frame = on_frame
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100)
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._on_frame(msg.data)
                try:
                    await self._queue.put(json.loads(msg.data))
                except ValueError:
                    await self._queue.put({"type": None})
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                # The code the cloud sent: ws.close_code turns 1006 when our reply
                # cannot be written because the cloud already closed the connection.
                await self._queue.put(("closed", msg.data))
                return
            elif msg.type in closing or msg.type == aiohttp.WSMsgType.ERROR:
                await self._queue.put(("closed", self.ws.close_code))
                return

    async def next(self, timeout: float) -> Any:
        """The next message as JSON; ("closed", code) when the channel closed; None on silence."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _ws_timeout() -> Any:
    """5 s to close, no receive timeout (we keep our own), in aiohttp before 3.10 too."""
    ws_timeout = getattr(aiohttp, "ClientWSTimeout", None)
    return ws_timeout(ws_receive=None, ws_close=5) if ws_timeout else 5.0


def _verifies(key: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True
