"""The archive on disk (docs/design.md §12.6): its layout, what the runs' playlists say,
the recorded spans and the VOD playlist of a time range. No aiohttp here: files only.

LAYOUT. `ARCHIVE/<source slug>/<run>/`, a run being `r` and the mock time it started in
milliseconds, 15 digits (sortable), holding
- `index.m3u8`, `init.mp4`, `seg000000.m4s` …: ffmpeg's HLS event playlist and its files;
- `clock`: the mock clock's offset (seconds) when the run started (TIMES);
- `pruned`: how many leading playlist entries are deleted (WATERMARK).
Directories are 0700 and files 0600 (ffmpeg runs with umask 077).

TIMES. ffmpeg stamps each segment (`#EXT-X-PROGRAM-DATE-TIME`) from the wall clock; the
mock clock is the wall clock plus an offset that the test hook moves. A run keeps the
offset it started with, and its segments' times are their wall times plus that offset;
the recorder cuts its run when the offset changes, so one offset holds for a whole run.
Every time the API shows, the pruner compares and the VOD playlist writes is a mock time:
moving the mock clock ages what was recorded before, and what is recorded after it is
stamped with the new time.

WATERMARK. ffmpeg rewrites the playlist of the run it writes (every entry since the
start), so the pruner cannot edit it. It writes instead how many leading entries are
gone, then deletes their files: retention and the size cap both delete the oldest first,
so what goes is always a prefix of a run. A finished run whose last segment goes is
removed whole.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RUN_NAME = re.compile(r"r[0-9]{15}")
SEGMENT_NAME = re.compile(r"seg[0-9]{6,9}\.m4s")
INIT_NAME = "init.mp4"
PLAYLIST = "index.m3u8"
CLOCK_FILE = "clock"
PRUNED_FILE = "pruned"
SLUG = re.compile(r"[0-9a-f]{32}")

GAP_S = 1.0  # segments this close are one span
MAX_PLAYLIST_BYTES = 16 * 1024 * 1024  # of one run's index.m3u8 (an hour is ~300 KB)
MAX_SEGMENT_S = 3600.0  # an #EXTINF beyond this is not ffmpeg's
MAX_CACHED_SEGMENTS = 200_000  # parsed runs kept in memory, in segments (~40 MB)
MAX_FILE_BYTES = 256 * 1024 * 1024  # a segment or init file served


def run_name(mock_now: float) -> str:
    return f"r{max(0, int(mock_now * 1000)):015d}"


@dataclass(frozen=True, slots=True)
class Segment:
    run: str
    name: str
    start: float  # mock time
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    segments: tuple[Segment, ...]  # those after the watermark, in playlist order
    pruned: int  # the watermark: leading (parsed) entries deleted
    start: float | None = None  # of its segments, None when it has none
    end: float | None = None

    @classmethod
    def of(cls, path: Path, segments: tuple[Segment, ...], pruned: int) -> Run:
        if not segments:
            return cls(path.name, path, (), pruned)
        start = min(s.start for s in segments)
        return cls(path.name, path, segments, pruned, start, max(s.end for s in segments))


def _program_date_time(value: str) -> float | None:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = moment.timestamp()
    return seconds if math.isfinite(seconds) else None


def parse_playlist(text: str, run: str, offset: float) -> list[Segment]:
    """Every segment entry of an ffmpeg HLS playlist, timed in mock seconds.

    A tag applies to the next URI (ffmpeg writes `#EXTINF` before the date, other
    writers after: both work). An entry without a date follows the previous one; an
    entry that cannot be timed, or whose URI is not a segment name, is left out."""
    segments: list[Segment] = []
    duration: float | None = None
    wall: float | None = None
    next_start: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
            except ValueError:
                duration = None
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            wall = _program_date_time(line[len("#EXT-X-PROGRAM-DATE-TIME:") :])
        elif line and not line.startswith("#"):
            start = wall + offset if wall is not None else next_start
            if (
                duration is not None
                and 0 < duration <= MAX_SEGMENT_S  # NaN and infinity fail too
                and start is not None
                and SEGMENT_NAME.fullmatch(line)
            ):
                segments.append(Segment(run, line, start, duration))
                next_start = start + duration
            duration, wall = None, None
    return segments


def spans(segments: Iterable[Segment], gap: float = GAP_S) -> list[tuple[float, float]]:
    """Contiguous time (segments at most `gap` apart merged), oldest first."""
    merged: list[list[float]] = []
    for segment in sorted(segments, key=lambda s: s.start):
        if merged and segment.start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], segment.end)
        else:
            merged.append([segment.start, segment.end])
    return [(start, end) for start, end in merged]


def overlapping(runs: Iterable[Run], lo: float, hi: float) -> list[Segment]:
    """The segments that overlap [lo, hi], run by run, in playlist order."""
    found: list[Segment] = []
    for run in runs:
        if run.start is None or run.end is None or run.end <= lo or run.start >= hi:
            continue
        found.extend(s for s in run.segments if s.end > lo and s.start < hi)
    return found


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def vod_playlist(segments: list[Segment]) -> str:
    """An HLS VOD playlist of `segments` (grouped by run, as `overlapping` gives them),
    its URIs relative to the playlist's own URL: `files/<run>/<file>`."""
    target = max([1, *(math.ceil(s.duration) for s in segments)])
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    run: str | None = None
    for segment in segments:
        if segment.run != run:
            if run is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            run = segment.run
            lines.append(f'#EXT-X-MAP:URI="files/{run}/{INIT_NAME}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(segment.start)}")
        lines.append(f"#EXTINF:{segment.duration:.6f},")
        lines.append(f"files/{segment.run}/{segment.name}")
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# --- small files ------------------------------------------------------------------------


def read_small(path: Path, limit: int = 4096) -> str | None:
    """A small regular file's text (symlinks refused), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        return file.read(limit).decode(errors="replace")


def write_small(path: Path, text: str) -> None:
    """Replace `path` atomically with `text` (0600)."""
    temporary = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def read_number(path: Path) -> float:
    text = read_small(path)
    try:
        value = float(text) if text is not None else 0.0
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


# --- the index --------------------------------------------------------------------------


def _subdirs(path: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The real directories (not symlinks) in `path` whose names match, sorted."""
    try:
        with os.scandir(path) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


class ArchiveIndex:
    """The runs of each source, each playlist parsed once per change (its size and
    mtime), at most MAX_CACHED_SEGMENTS segments kept (least recently used go)."""

    def __init__(self, root: Path, max_segments: int = MAX_CACHED_SEGMENTS) -> None:
        self.root = root
        self.max_segments = max_segments
        self._cache: OrderedDict[Path, tuple[tuple[int, int, int], Run]] = OrderedDict()
        self._cached_segments = 0
        self.parses = 0  # playlists parsed (how cheap it is, for tests)

    def source_dir(self, slug: str) -> Path:
        return self.root / slug

    def sources(self) -> list[Path]:
        return _subdirs(self.root, SLUG)

    def run_dirs(self, source_dir: Path) -> list[Path]:
        return _subdirs(source_dir, RUN_NAME)

    def runs(self, source_dir: Path) -> list[Run]:
        return [self.run(path) for path in self.run_dirs(source_dir)]

    def run(self, path: Path) -> Run:
        try:
            info = os.stat(path / PLAYLIST, follow_symlinks=False)
            key = (info.st_mtime_ns, info.st_size, info.st_ino)
            if not stat.S_ISREG(info.st_mode):
                key = (0, 0, 0)
        except OSError:
            key = (0, 0, 0)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            self._cache.move_to_end(path)
            return cached[1]
        run = self._parse(path, key)
        self._store(path, key, run)
        return run

    def _parse(self, path: Path, key: tuple[int, int, int]) -> Run:
        pruned = int(read_number(path / PRUNED_FILE))
        if key == (0, 0, 0):
            return Run.of(path, (), pruned)
        self.parses += 1
        text = read_small(path / PLAYLIST, MAX_PLAYLIST_BYTES) or ""
        entries = parse_playlist(text, path.name, read_number(path / CLOCK_FILE))
        return Run.of(path, tuple(entries[max(0, pruned) :]), pruned)

    def _store(self, path: Path, key: tuple[int, int, int], run: Run) -> None:
        self.forget(path)
        self._cache[path] = (key, run)
        self._cached_segments += len(run.segments)
        while self._cached_segments > self.max_segments and len(self._cache) > 1:
            _, (_, oldest) = self._cache.popitem(last=False)
            self._cached_segments -= len(oldest.segments)

    def forget(self, path: Path) -> None:
        """Drop a run (or every run under a source directory) from the cache."""
        for cached in [p for p in self._cache if p == path or path in p.parents]:
            _, run = self._cache.pop(cached)
            self._cached_segments -= len(run.segments)

    def set_pruned(self, run: Run, pruned: int) -> Run:
        """Move a run's watermark to `pruned` leading entries (and re-read it)."""
        write_small(run.path / PRUNED_FILE, f"{pruned}\n")
        self.forget(run.path)
        return self.run(run.path)


def open_file(root: Path, slug: str, run: str, name: str) -> bytes | None:
    """The bytes of `root/slug/run/name` if each part has the archive's shape and none is
    a symlink; None otherwise (a 404 for the caller, whatever the reason)."""
    ok_name = name == INIT_NAME or SEGMENT_NAME.fullmatch(name)
    if not (SLUG.fullmatch(slug) and RUN_NAME.fullmatch(run) and ok_name):
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW
    opened: list[int] = []
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
        opened.append(fd)
        for part in (slug, run):
            fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            opened.append(fd)
        fd = os.open(name, flags, dir_fd=fd)
        opened.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        chunks = []
        while chunk := os.read(fd, 1024 * 1024):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)
