"""The checks: the device side of the protocol, played against a cloud.

The kit behaves as a camera and as an NVR would (the agent's own wire format and token
codec: agent/provisioning/wire.py, agent/token_codec.py), and as a hostile or confused
device would, and records for every rule of report.RULES whether the cloud kept it.
Time comes from the cloud's `Date` header, as on a device without a clock, so a cloud
whose clock differs from ours is judged by its own clock.

`Conformance` holds a run (the device's HTTP and channel, the report) and runs the rules
in order; the rules themselves live by concern: provisioning_checks (keys, polls,
tokens), identity_checks, channel_checks, claims_checks, nvr_checks, tunnel_checks.
"""

from __future__ import annotations

import email.utils
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import WireError
from agent.provisioning.wire import PollRequest, unseal_token
from cloud_mock.conformance import (
    channel_checks,
    claims_checks,
    nvr_checks,
    provisioning_checks,
)
from cloud_mock.conformance.cloud_side import CloudSide, CloudSideError, Unsupported
from cloud_mock.conformance.common import (
    ANSWER_TIMEOUT_S,
    DEFAULT_TIMING_SAMPLES,
    DEFAULT_TIMING_TOLERANCE_S,
    HTTP_TIMEOUT_S,
    POLL_PATH,
    SILENCE_S,
    WS_PATH,
    Answer,
    Failed,
    Link,
    Options,
    _ws_timeout,
    random_mac,
)
from cloud_mock.conformance.documents import ChannelContract, HttpContract
from cloud_mock.conformance.report import RULES, Outcome, Report, Result

__all__ = [  # what the kit's entry point and the other check modules take from here
    "ANSWER_TIMEOUT_S",
    "DEFAULT_TIMING_SAMPLES",
    "DEFAULT_TIMING_TOLERANCE_S",
    "Conformance",
    "Failed",
    "Link",
    "Options",
    "_ws_timeout",
    "random_mac",
]


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
        # A file-like body: aiohttp warns of raw bytes this large (the 1 MiB malformed poll).
        data = io.BytesIO(body) if body is not None and len(body) >= 1 << 20 else body
        async with self.session.request(
            method,
            self.url + path,
            data=data,
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
        prov = provisioning_checks
        await self.step("keys.published", lambda: prov.check_keys(self))
        await self.step("prov.unknown-no-token", lambda: prov.check_unknown_device(self))
        await self.step("prov.malformed-400", lambda: prov.check_malformed(self))
        camera = await self.step("prov.token-delivered", lambda: prov.check_token_delivered(self))
        dependents = (
            "token.format",
            "prov.replay-refused",
            "prov.clock-window",
            "prov.indistinguishable",
            "channel.hello-first",
        )
        if camera is not None:
            device_id, key, token, body = camera
            await self.step(
                "token.format", lambda: prov.check_token(self, token, device_id, "camera")
            )
            await self.step("prov.replay-refused", lambda: prov.check_replay(self, body))
            await self.step("prov.clock-window", lambda: prov.check_window(self, key, device_id))
            await self.step(
                "prov.indistinguishable", lambda: prov.check_indistinguishable(self, device_id)
            )
            from cloud_mock.conformance import identity_checks  # it imports this module

            await identity_checks.run(self, device_id, key, token)
            await self.step(
                "channel.hello-first", lambda: channel_checks.check_channel(self, device_id, token)
            )
        else:
            for rule in dependents:
                self.skipped(rule, "not checked: no camera token (see prov.token-delivered)")
        await claims_checks.run(self)
        await self.step("channel.bad-token-4401", lambda: channel_checks.check_bad_token(self))
        await self.step("prov.long-poll-wakeup", lambda: prov.check_long_poll(self))
        await self.step("prov.retry-after", lambda: prov.check_retry_after(self))
        await self.step("nvr.register-code", lambda: nvr_checks.check_nvr_activation(self))
        await self.step("nvr.registration-token", lambda: nvr_checks.check_registration_token(self))
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
