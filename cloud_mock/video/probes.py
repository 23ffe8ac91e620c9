"""`probe` (docs/design.md §12.4): which of a device's streams answer, and their codec.

The mock sends `probe` to a device that offers video when it says hello and every
`probe_s` while its channel lasts, and keeps the newest result of each device in memory:
what the console shows instead of "online" for an NVR's cameras, and what tells the
thumbnails a stream is not H.264 before any tunnel is opened.

A device is not trusted: its answer is checked field by field (types, lengths, counts,
only the targets it offered); what does not fit is left out and said in `reason`. A
device that does not know `probe` (an older camagent), refuses it or does not answer in
time leaves no streams and a reason a person can read.

Bounds: one entry per device, replaced by each probe. It goes when the device's source
goes (the camera deleted, the NVR deleted) and, for a device that stays offline, after
FORGET_AFTER_S of mock time (looked at no more often than once a minute); MAX_RESULTS
caps the whole table (the oldest entry goes first).

The background work is one task per online device (`DeviceTasks`, which thumbnails.py
uses too): started by the hello, ended by the end of that channel, all cancelled when
the mock shuts down. An exception in a round is logged and the next round runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cloud_mock.devices_ws import (
    CHANNELS,
    HELLO_HOOKS,
    MAX_TARGET_NAME,
    MAX_VIDEO_TARGETS,
    Channel,
    ChannelClosed,
)
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.video.ffmpeg import redact
from cloud_mock.video.settings import VIDEO_SETTINGS
from cloud_mock.video.sources import SOURCE_GONE, VideoSource

log = logging.getLogger(__name__)

FORGET_AFTER_S = 3600.0  # an offline device's last result is kept this long (mock clock)
PRUNE_EVERY_S = 60.0
MAX_RESULTS = 50_000
MAX_STREAMS = MAX_VIDEO_TARGETS  # entries kept of one answer
MAX_DETAIL = 300
MAX_REASON = 300
_CODEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
H264 = "H264"
_CODEC_NAMES = {"H265": "H.265", "HEVC": "H.265", "JPEG": "MJPEG", "MP4V-ES": "MPEG-4 Part 2"}


def shown(value: Any, limit: int = MAX_REASON) -> str:
    """A device's text as a person may see it: one line, no credentials, bounded."""
    text = value if isinstance(value, str) else repr(value)
    text = redact(_CONTROL.sub(" ", text[: limit * 4]).strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def codec_problem(codec: str | None) -> str | None:
    """Why a browser cannot play a stream of this SDP codec, or None (H.264 or unknown)."""
    if codec is None or codec.upper() == H264:
        return None
    name = _CODEC_NAMES.get(codec.upper(), codec)
    return f"this camera sends {name}, which browsers cannot play; set its stream to H.264"


@dataclass(frozen=True)
class StreamProbe:
    target: str  # the device's target name ("main", "gate/sub")
    reachable: bool
    codec: str | None
    detail: str

    def to_json(self, prefix: str = "") -> dict[str, Any]:
        return {
            "target": self.target[len(prefix) :],
            "reachable": self.reachable,
            "codec": self.codec,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ProbeResult:
    at: float  # mock clock
    streams: tuple[StreamProbe, ...] | None  # None: no usable answer
    reason: str | None  # why there are no streams, or what of the answer was left out

    def of_source(self, source: VideoSource) -> list[StreamProbe] | None:
        if self.streams is None:
            return None
        return [s for s in self.streams if s.target.startswith(source.prefix)]

    def stream(self, source: VideoSource, stream: str) -> StreamProbe | None:
        target = source.target(stream)
        return next((s for s in self.streams or () if s.target == target), None)


def parse_answer(
    data: Any, offered: tuple[str, ...] | None
) -> tuple[tuple[StreamProbe, ...] | None, str | None]:
    """A `probe` result checked: (the entries that are well-formed, what was wrong)."""
    if not isinstance(data, dict) or not isinstance(data.get("streams"), list):
        return None, "the device's answer to probe has no list of streams"
    raw = data["streams"]
    kept: list[StreamProbe] = []
    seen: set[str] = set()
    bad = 0
    for item in raw[:MAX_STREAMS]:
        entry = _entry(item, offered)
        if entry is None or entry.target in seen:
            bad += 1
            continue
        seen.add(entry.target)
        kept.append(entry)
    problems = []
    if bad:
        problems.append(f"{bad} malformed or unknown entr{'y' if bad == 1 else 'ies'}")
    if len(raw) > MAX_STREAMS:
        problems.append(f"{len(raw) - MAX_STREAMS} entries over {MAX_STREAMS}")
    reason = None
    if problems:
        reason = "the device's answer to probe was partly malformed: left out " + ", ".join(
            problems
        )
    return tuple(kept), reason


def _entry(item: Any, offered: tuple[str, ...] | None) -> StreamProbe | None:
    if not isinstance(item, dict):
        return None
    target, reachable = item.get("target"), item.get("reachable")
    codec, detail = item.get("codec"), item.get("detail")
    if not isinstance(target, str) or not 0 < len(target) <= MAX_TARGET_NAME:
        return None
    if _CONTROL.search(target) or (offered is not None and target not in offered):
        return None
    if not isinstance(reachable, bool):
        return None
    if codec is not None and (not isinstance(codec, str) or not _CODEC.fullmatch(codec)):
        return None
    if detail is None:
        detail = ""
    if not isinstance(detail, str):
        return None
    return StreamProbe(target, reachable, codec, shown(detail, MAX_DETAIL))


def _refusal(data: Any) -> str:
    text = shown(data)
    if "unknown command" in text:
        return "the device does not know the probe command (its camagent is older)"
    return f"the device refused probe: {text}"


# -- one task per online device -------------------------------------------------------


# Done when a channel ends; typed as the channel's pending commands, among which it waits.
Ended = asyncio.Future[tuple[bool, Any]]
Work = Callable[[web.Application, Channel, Ended], Awaitable[None]]


def channel_ended(channel: Channel) -> tuple[str, Ended]:
    """A future done when the channel ends (closed, replaced, revoked, shutting down).

    It waits among the channel's pending commands under a random id no device can
    answer: the channel fails every pending command when it ends, and so this one.
    """
    future: Ended = asyncio.get_running_loop().create_future()
    future.add_done_callback(_retrieve)
    key = f"channel-end-{uuid.uuid4().hex}"
    channel.pending[key] = future
    return key, future


def _retrieve(future: Ended) -> None:
    if not future.cancelled():
        future.exception()  # ChannelClosed, expected: not "never retrieved"


async def ended_within(ended: Ended, seconds: float) -> bool:
    """Wait up to `seconds` for the channel's end; whether it ended."""
    if not ended.done() and seconds > 0:
        await asyncio.wait({ended}, timeout=seconds)
    return ended.done()


class DeviceTasks:
    """At most one task per online device, for one kind of work."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, peer_id: str) -> bool:
        task = self._tasks.get(peer_id)
        return task is not None and not task.done()

    def start(self, app: web.Application, channel: Channel, work: Work) -> None:
        peer_id = channel.peer.id
        old = self._tasks.pop(peer_id, None)
        if old is not None:
            old.cancel()  # its channel was replaced: it is ending anyway
        key, ended = channel_ended(channel)
        task = asyncio.create_task(
            self._run(app, channel, work, key, ended),
            name=f"{self.what} {channel.device_id}",
        )
        self._tasks[peer_id] = task
        task.add_done_callback(lambda done: self._done(peer_id, done))

    async def _run(
        self,
        app: web.Application,
        channel: Channel,
        work: Work,
        key: str,
        ended: Ended,
    ) -> None:
        try:
            await work(app, channel, ended)
        finally:
            channel.pending.pop(key, None)
            if not ended.done():
                ended.cancel()

    def _done(self, peer_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(peer_id) is task:
            del self._tasks[peer_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped on an error", task.get_name(), exc_info=task.exception())

    async def stop_all(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the results ----------------------------------------------------------------------


class Probes:
    def __init__(self) -> None:
        self._results: dict[str, ProbeResult] = {}
        self._first: dict[str, tuple[Channel, asyncio.Event]] = {}
        self.tasks = DeviceTasks("probes")
        self._pruned = time.monotonic()

    def __len__(self) -> int:
        return len(self._results)

    def result(self, peer_id: str) -> ProbeResult | None:
        return self._results.get(peer_id)

    def forget(self, peer_id: str) -> None:
        self._results.pop(peer_id, None)

    def hello(self, app: web.Application, channel: Channel) -> None:
        """HELLO_HOOKS: probe a device that offers video, now and every probe_s."""
        self.prune(app)
        if not channel.video:  # no video, or a device older than §12: nothing to ask
            self._first.pop(channel.peer.id, None)
            return
        self._first[channel.peer.id] = (channel, asyncio.Event())
        self.tasks.start(app, channel, self._probe_loop)

    async def first_probe(self, channel: Channel, timeout: float) -> None:
        """Wait (at most `timeout`) until this channel's hello probe is done."""
        entry = self._first.get(channel.peer.id)
        if entry is None or entry[0] is not channel:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await entry[1].wait()

    async def _probe_loop(self, app: web.Application, channel: Channel, ended: Ended) -> None:
        peer_id = channel.peer.id
        try:
            while True:
                try:
                    await self.probe(app, channel)
                except Exception:
                    log.exception("%s: probe failed", channel.device_id)
                entry = self._first.get(peer_id)
                if entry is not None and entry[0] is channel:
                    entry[1].set()
                if await ended_within(ended, app[VIDEO_SETTINGS].probe_s):
                    return
        finally:
            entry = self._first.get(peer_id)
            if entry is not None and entry[0] is channel:
                del self._first[peer_id]

    async def probe(self, app: web.Application, channel: Channel) -> ProbeResult | None:
        """Ask the device once and keep its answer; None if the channel ended first."""
        timeout = app[CONFIG].command_timeout_s
        streams: tuple[StreamProbe, ...] | None
        reason: str | None
        try:
            ok, data = await channel.command("probe", {}, timeout)
        except ChannelClosed:
            return None
        except TimeoutError:
            streams, reason = None, f"the device did not answer probe within {timeout:g} s"
        else:
            if ok:
                streams, reason = parse_answer(data, channel.video)
            else:
                streams, reason = None, _refusal(data)
        result = ProbeResult(app[CLOCK].now(), streams, reason)
        previous = self._results.get(channel.peer.id)
        if reason is not None and (previous is None or previous.reason != reason):
            log.info("%s: probe: %s", channel.device_id, reason)
        if app[CHANNELS].get(channel.peer.id) is not channel:
            return None  # ended or replaced while it answered: the new channel probes
        self._keep(channel.peer.id, result)
        return result

    def _keep(self, peer_id: str, result: ProbeResult) -> None:
        self._results.pop(peer_id, None)
        self._results[peer_id] = result
        while len(self._results) > MAX_RESULTS:
            oldest = min(self._results, key=lambda p: self._results[p].at)
            del self._results[oldest]

    def prune(self, app: web.Application, *, force: bool = False) -> int:
        """Forget the results of devices offline for FORGET_AFTER_S; how many went."""
        now = time.monotonic()
        if not force and now - self._pruned < PRUNE_EVERY_S:
            return 0
        self._pruned = now
        channels, cutoff = app[CHANNELS], app[CLOCK].now() - FORGET_AFTER_S
        stale = [
            peer_id
            for peer_id, result in self._results.items()
            if result.at < cutoff and not channels.is_online(peer_id)
        ]
        for peer_id in stale:
            del self._results[peer_id]
        return len(stale)


PROBES = web.AppKey("video_probes", Probes)


async def _source_gone(app: web.Application, source: VideoSource) -> None:
    # An NVR's entry stays while the NVR does: one camera dropped by Sync is not the NVR.
    if source.kind == "camera" or app[STORE].registrators.get_registrator(source.peer_id) is None:
        app[PROBES].forget(source.peer_id)


async def _stop(app: web.Application) -> None:
    await app[PROBES].tasks.stop_all()


def setup(app: web.Application) -> None:
    probes = app[PROBES] = Probes()
    app[HELLO_HOOKS].add(probes.hello)
    app[SOURCE_GONE].add(_source_gone)
    app.on_shutdown.append(_stop)
