"""One provisioning request over HTTPS (docs/design.md §2), and the cloud's key list.

Network errors, timeouts, 5xx and malformed answers all come back as a `PollOutcome`
without a token: the schedule counts them like any request that brought none.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from agent.errors import WireError
from agent.provisioning.wire import PollRequest, unseal_token

log = logging.getLogger(__name__)

POLL_PATH = "/v1/provisioning/poll"
KEYS_PATH = "/v1/keys"
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class PollOutcome:
    token: str | None  # still to be verified by the caller
    detail: str  # what happened, in words for the log and `status`
    retry_after: float | None = None
    clock_offset: float | None = None  # cloud Date minus local time, when the cloud sent one
    answered: bool = False  # the cloud answered the poll as a poll (204: no token for it yet)


def request_ts(clock_offset: float | None, now: float | None = None) -> int:
    """The poll's `ts`: local time, corrected by the cloud's Date when the clock is off.

    A camera without RTC or NTP starts in 1970; the cloud accepts ±300 s, so an offset of
    more than a minute means our clock, not the network delay, is wrong.
    """
    local = time.time() if now is None else now
    if clock_offset is not None and abs(clock_offset) > 60:
        return int(local + clock_offset)
    return int(local)


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _clock_offset(response: aiohttp.ClientResponse, received_at: float) -> float | None:
    date = response.headers.get("Date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() - received_at
    except (TypeError, ValueError):
        return None


async def poll_once(
    session: aiohttp.ClientSession,
    cloud_url: str,
    key: bytes,
    device_id: str,
    *,
    wait: int,
    timeout: float,
    clock_offset: float | None,
    wall: Callable[[], float] = time.time,
) -> PollOutcome:
    request = PollRequest.build(key, device_id, request_ts(clock_offset, wall()), wait)
    try:
        async with session.post(
            cloud_url.rstrip("/") + POLL_PATH,
            json=request.to_json(),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            received_at = wall()
            offset = _clock_offset(response, received_at)
            retry_after = parse_retry_after(response.headers.get("Retry-After"), received_at)
            if response.status == 204:
                return PollOutcome(None, "no token yet", retry_after, offset, answered=True)
            if response.status != 200:
                return PollOutcome(None, f"HTTP {response.status}", retry_after, offset)
            body = await read_bounded(response, MAX_ANSWER_BYTES)
    except TimeoutError:
        return PollOutcome(None, f"timed out after {timeout:.1f} s")
    except (aiohttp.ClientError, OSError) as exc:
        return PollOutcome(None, f"network error: {exc or type(exc).__name__}")
    except WireError as exc:
        return PollOutcome(None, f"malformed answer: {exc}")
    try:
        token = _unseal_answer(body, key, device_id)
    except WireError as exc:
        return PollOutcome(None, f"malformed answer: {exc}", None, offset)
    return PollOutcome(token, "token received", None, offset)


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, however it was split on the wire, but never more than `limit`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16384):
        size += len(chunk)
        if size > limit:
            raise WireError(f"answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _unseal_answer(body: bytes, key: bytes, device_id: str) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise WireError("answer is not JSON") from None
    if not isinstance(data, dict) or "sealed_token" not in data:
        raise WireError("answer has no sealed_token")
    return unseal_token(key, device_id, data["sealed_token"])


async def fetch_keys(
    session: aiohttp.ClientSession, cloud_url: str, timeout: float = 15.0
) -> list[str]:
    """The cloud's token-signing keys (PEM), over TLS verified against the trusted CAs.

    A caller inside a provisioning request passes what is left of the request's time, so
    that the fetch cannot run past the moment the next request is due.
    """
    try:
        async with session.get(
            cloud_url.rstrip("/") + KEYS_PATH, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            response.raise_for_status()
            data = json.loads(await read_bounded(response, MAX_ANSWER_BYTES))
    except (
        aiohttp.ClientError,
        OSError,
        TimeoutError,
        ValueError,
        RecursionError,
        WireError,
    ) as exc:
        raise WireError(f"cannot fetch the cloud's keys from {cloud_url}: {exc}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    pems = [k.get("pem") for k in keys or [] if isinstance(k, dict)]
    if not pems or not all(isinstance(p, str) for p in pems):
        raise WireError(f"{cloud_url}{KEYS_PATH} lists no keys")
    return [str(p) for p in pems]


__all__ = ["PollOutcome", "fetch_keys", "poll_once", "request_ts"]
