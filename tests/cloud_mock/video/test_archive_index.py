"""The archive on disk, without a server: playlists parsed, spans, the VOD playlist,
files opened safely, and retention (age and size cap) over archives written by hand as
ffmpeg's HLS muxer writes them. The helpers here serve test_archive_api.py too."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud_mock.video.archive_index import (
    CLOCK_FILE,
    INIT_NAME,
    PLAYLIST,
    PRUNED_FILE,
    ArchiveIndex,
    Segment,
    open_file,
    overlapping,
    parse_playlist,
    run_name,
    spans,
    vod_playlist,
)
from cloud_mock.video.retention import DAY_S, Pruned, Pruner

T0 = 1_765_000_000.0  # December 2025, wall clock
SLUG_A = "a" * 32
SLUG_B = "b" * 32


# --- archives written by hand -----------------------------------------------------------


def pdt(seconds: float) -> str:
    """A time as ffmpeg 5.1 writes #EXT-X-PROGRAM-DATE-TIME (milliseconds, +0000)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def write_run(
    source_dir: Path,
    start: float,
    durations: list[float],
    *,
    offset: float = 0.0,
    size: int = 1000,
    ended: bool = True,
) -> Path:
    """A run of `durations` back to back from wall time `start`, each segment `size`
    bytes, the mock clock `offset` ahead of the wall clock; returns its directory."""
    run = source_dir / run_name(start + offset)
    run.mkdir(mode=0o700, parents=True)
    (run / CLOCK_FILE).write_text(f"{offset!r}\n")
    (run / INIT_NAME).write_bytes(b"\0\0\0\x18ftypiso5" + bytes(12))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, round(max(durations, default=1)))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{INIT_NAME}"',
    ]
    at = start
    for number, duration in enumerate(durations):
        name = f"seg{number:06d}.m4s"
        lines += [f"#EXTINF:{duration:.6f},", f"#EXT-X-PROGRAM-DATE-TIME:{pdt(at)}", name]
        (run / name).write_bytes(bytes([number % 256]) * size)
        at += duration
    if ended:
        lines.append("#EXT-X-ENDLIST")
    (run / PLAYLIST).write_text("\n".join(lines) + "\n")
    return run


def segment_files(directory: Path) -> list[str]:
    """Every segment file under `directory`, as run/name, sorted."""
    return sorted(f"{p.parent.name}/{p.name}" for p in directory.rglob("seg*.m4s"))


# --- playlists --------------------------------------------------------------------------

FFMPEG_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:1.991172,
#EXT-X-PROGRAM-DATE-TIME:2025-12-06T05:46:40.000+0000
seg000000.m4s
#EXTINF:0.999766,
#EXT-X-PROGRAM-DATE-TIME:2025-12-06T05:46:41.991+0000
seg000001.m4s
#EXTINF:0.400000,
#EXT-X-PROGRAM-DATE-TIME:2025-12-06T05:46:42.991+0000
seg000002.m4s
#EXT-X-ENDLIST
"""


def test_ffmpegs_playlist_gives_each_segment_its_mock_time() -> None:
    segments = parse_playlist(FFMPEG_PLAYLIST, "r1", offset=100.0)
    assert [s.name for s in segments] == ["seg000000.m4s", "seg000001.m4s", "seg000002.m4s"]
    assert segments[0].start == pytest.approx(T0 + 100.0)
    assert segments[1].start == pytest.approx(T0 + 100.0 + 1.991)
    assert segments[2].duration == pytest.approx(0.4)
    assert {s.run for s in segments} == {"r1"}


def test_a_date_before_its_duration_and_a_missing_date_are_understood() -> None:
    text = "\n".join(
        [
            "#EXTM3U",
            f"#EXT-X-PROGRAM-DATE-TIME:{pdt(T0)}",
            "#EXTINF:2.0,",
            "seg000000.m4s",
            "#EXTINF:2.0,",  # no date: it follows the previous segment
            "seg000001.m4s",
        ]
    )
    segments = parse_playlist(text, "r1", 0.0)
    assert [(s.start, s.duration) for s in segments] == [(T0, 2.0), (T0 + 2.0, 2.0)]


@pytest.mark.parametrize(
    "entry",
    [
        ["#EXTINF:nan,", "seg000001.m4s"],
        ["#EXTINF:inf,", "seg000001.m4s"],
        ["#EXTINF:-1,", "seg000001.m4s"],
        ["#EXTINF:two,", "seg000001.m4s"],
        ["seg000001.m4s"],  # no duration
        ["#EXTINF:1.0,", "../../etc/passwd"],
        ["#EXTINF:1.0,", "/etc/passwd"],
        ["#EXTINF:1.0,", "http://example.com/seg000001.m4s"],
        ["#EXTINF:1.0,", "seg000001.m4s.tmp"],
    ],
)
def test_entries_that_are_not_segments_of_ours_are_left_out(entry: list[str]) -> None:
    head = [f"#EXT-X-PROGRAM-DATE-TIME:{pdt(T0)}", "#EXTINF:1.0,", "seg000000.m4s"]
    segments = parse_playlist("\n".join([*head, *entry]), "r1", 0.0)
    assert [s.name for s in segments] == ["seg000000.m4s"]


def test_an_entry_without_any_time_is_left_out() -> None:
    assert parse_playlist("#EXTINF:1.0,\nseg000000.m4s\n", "r1", 0.0) == []


def test_segments_a_second_apart_or_less_are_one_span() -> None:
    segments = [
        Segment("r1", "seg000000.m4s", 100.0, 2.0),
        Segment("r1", "seg000001.m4s", 102.0, 2.0),
        Segment("r2", "seg000000.m4s", 104.9, 2.0),  # a 0.9 s gap: the same span
        Segment("r3", "seg000000.m4s", 110.0, 2.0),  # a 3.1 s gap: another
    ]
    assert spans(segments) == [(100.0, 106.9), (110.0, 112.0)]
    assert spans([]) == []


def test_the_vod_playlist_maps_each_run_and_breaks_between_runs() -> None:
    segments = [
        Segment("r000000000000001", "seg000003.m4s", T0, 2.0),
        Segment("r000000000000001", "seg000004.m4s", T0 + 2.0, 1.2),
        Segment("r000000000000002", "seg000000.m4s", T0 + 10.0, 2.4),
    ]
    text = vod_playlist(segments)
    lines = text.splitlines()
    assert lines[:6] == [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:3",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    assert lines[6] == '#EXT-X-MAP:URI="files/r000000000000001/init.mp4"'
    assert lines[7] == "#EXT-X-PROGRAM-DATE-TIME:2025-12-06T05:46:40.000Z"
    assert lines[8:10] == ["#EXTINF:2.000000,", "files/r000000000000001/seg000003.m4s"]
    assert lines.index("#EXT-X-DISCONTINUITY") == 13
    assert lines[14] == '#EXT-X-MAP:URI="files/r000000000000002/init.mp4"'
    assert lines[-2:] == ["files/r000000000000002/seg000000.m4s", "#EXT-X-ENDLIST"]
    assert text.count("#EXTINF:") == 3


# --- the index --------------------------------------------------------------------------


def test_a_playlist_is_parsed_once_per_change(tmp_path: Path) -> None:
    index = ArchiveIndex(tmp_path)
    run = write_run(tmp_path / SLUG_A, T0, [2.0, 2.0], ended=False)
    assert len(index.runs(tmp_path / SLUG_A)[0].segments) == 2
    for _ in range(5):
        index.runs(tmp_path / SLUG_A)
    assert index.parses == 1
    with (run / PLAYLIST).open("a") as playlist:  # ffmpeg adds a segment
        playlist.write(f"#EXTINF:2.0,\n#EXT-X-PROGRAM-DATE-TIME:{pdt(T0 + 4)}\nseg000002.m4s\n")
    assert len(index.runs(tmp_path / SLUG_A)[0].segments) == 3
    assert index.parses == 2


def test_the_cache_is_bounded_in_segments(tmp_path: Path) -> None:
    index = ArchiveIndex(tmp_path, max_segments=5)
    for i in range(4):
        write_run(tmp_path / SLUG_A, T0 + 100 * i, [1.0, 1.0, 1.0])
    assert sum(len(r.segments) for r in index.runs(tmp_path / SLUG_A)) == 12
    assert index._cached_segments <= 5
    assert len(index._cache) == 1


def test_runs_are_real_directories_with_run_names(tmp_path: Path) -> None:
    source = tmp_path / SLUG_A
    write_run(source, T0, [1.0])
    (source / "r12").mkdir()
    (source / "notes").mkdir()
    elsewhere = write_run(tmp_path / "elsewhere", T0 + 50, [1.0])
    (source / run_name(T0 + 50)).symlink_to(elsewhere)
    assert [p.name for p in ArchiveIndex(tmp_path).run_dirs(source)] == [run_name(T0)]


def test_the_watermark_hides_the_deleted_entries(tmp_path: Path) -> None:
    index = ArchiveIndex(tmp_path)
    path = write_run(tmp_path / SLUG_A, T0, [1.0, 1.0, 1.0])
    run = index.set_pruned(index.run(path), 2)
    assert [s.name for s in run.segments] == ["seg000002.m4s"]
    assert (path / PRUNED_FILE).read_text() == "2\n"
    assert [s.name for s in ArchiveIndex(tmp_path).run(path).segments] == ["seg000002.m4s"]


def test_overlapping_takes_the_segments_that_touch_the_range(tmp_path: Path) -> None:
    write_run(tmp_path / SLUG_A, T0, [2.0, 2.0, 2.0])
    write_run(tmp_path / SLUG_A, T0 + 100, [2.0])
    runs = ArchiveIndex(tmp_path).runs(tmp_path / SLUG_A)
    assert [s.name for s in overlapping(runs, T0 + 3, T0 + 4)] == ["seg000001.m4s"]
    assert len(overlapping(runs, T0 + 1, T0 + 101)) == 4
    assert overlapping(runs, T0 + 6, T0 + 100) == []


# --- opening a file ---------------------------------------------------------------------


def test_files_are_opened_only_by_their_archive_names(tmp_path: Path) -> None:
    run = write_run(tmp_path / SLUG_A, T0, [1.0], size=10)
    name = run.name
    assert open_file(tmp_path, SLUG_A, name, "seg000000.m4s") == bytes(10)
    assert open_file(tmp_path, SLUG_A, name, INIT_NAME) is not None
    for bad_run, bad_name in [
        (name, PLAYLIST),
        (name, CLOCK_FILE),
        (name, ".."),
        (name, "../" + name + "/seg000000.m4s"),
        ("..", "seg000000.m4s"),
        ("/etc", "passwd"),
        (name, "seg000001.m4s"),  # no such file
        (name, "seg000000.m4s.tmp"),
    ]:
        assert open_file(tmp_path, SLUG_A, bad_run, bad_name) is None, (bad_run, bad_name)
    assert open_file(tmp_path, "../" + SLUG_A, name, "seg000000.m4s") is None


def test_no_symlink_is_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not video")
    run = write_run(tmp_path / "archive" / SLUG_A, T0, [1.0])
    (run / "seg000007.m4s").symlink_to(secret)
    assert open_file(tmp_path / "archive", SLUG_A, run.name, "seg000007.m4s") is None
    other = write_run(tmp_path / "other", T0 + 10, [1.0])
    (run.parent / run_name(T0 + 10)).symlink_to(other)
    assert open_file(tmp_path / "archive", SLUG_A, run_name(T0 + 10), "seg000000.m4s") is None
    (tmp_path / "archive" / SLUG_B).symlink_to(run.parent)
    assert open_file(tmp_path / "archive", SLUG_B, run.name, "seg000000.m4s") is None


# --- retention --------------------------------------------------------------------------


def prune(
    root: Path,
    now: float,
    *,
    days: dict[str, int] | None = None,
    max_bytes: float = 1e12,
    active: set[Path] | None = None,
) -> tuple[Pruner, Pruned]:
    pruner = Pruner(ArchiveIndex(root))
    return pruner, pruner.prune(now, days or {}, 7, max_bytes, active or set())


def test_segments_older_than_the_retention_go_and_empty_runs_with_them(tmp_path: Path) -> None:
    old = write_run(tmp_path / SLUG_A, T0, [2.0, 2.0])
    mixed = write_run(tmp_path / SLUG_A, T0 + 10, [2.0, 2.0, 2.0])
    # One day of retention, and now is one day after T0 + 13: seg 0 of `mixed` ends at
    # T0 + 12 and goes, seg 1 ends at T0 + 14 and stays.
    _, result = prune(tmp_path, T0 + 13 + DAY_S, days={SLUG_A: 1})
    assert not old.exists()
    assert segment_files(tmp_path) == [f"{mixed.name}/seg000001.m4s", f"{mixed.name}/seg000002.m4s"]
    assert (mixed / PRUNED_FILE).read_text() == "1\n"
    assert (result.segments, result.runs) == (3, 1)
    index = ArchiveIndex(tmp_path)
    assert [s.name for s in index.run(mixed).segments] == ["seg000001.m4s", "seg000002.m4s"]


def test_retention_follows_each_sources_days_and_the_default(tmp_path: Path) -> None:
    write_run(tmp_path / SLUG_A, T0, [1.0])
    write_run(tmp_path / SLUG_B, T0, [1.0])  # no settings: 7 days
    prune(tmp_path, T0 + 3 * DAY_S, days={SLUG_A: 2})
    assert not (tmp_path / SLUG_A).exists()  # an emptied source directory goes too
    assert len(segment_files(tmp_path / SLUG_B)) == 1
    prune(tmp_path, T0 + 8 * DAY_S)
    assert segment_files(tmp_path) == []


def test_the_run_being_written_stays_even_when_all_it_listed_is_old(tmp_path: Path) -> None:
    run = write_run(tmp_path / SLUG_A, T0, [1.0, 1.0], ended=False)
    (run / "seg000002.m4s.tmp").write_bytes(b"being written")
    prune(tmp_path, T0 + 2 * DAY_S, days={SLUG_A: 1}, active={run})
    assert run.is_dir()
    assert segment_files(tmp_path) == []
    assert (run / "seg000002.m4s.tmp").exists()
    assert (run / INIT_NAME).exists()


def test_over_the_cap_the_oldest_segments_of_all_sources_go(tmp_path: Path) -> None:
    a = write_run(tmp_path / SLUG_A, T0, [1.0] * 4, size=10_000)
    b = write_run(tmp_path / SLUG_B, T0 + 2.5, [1.0] * 4, size=10_000)
    # Oldest first, by time across both: a0 (T0), a1, a2, b0 (T0 + 2.5), a3, b1, ...
    _, result = prune(tmp_path, T0 + 10, max_bytes=45_000)
    assert segment_files(tmp_path) == [
        f"{a.name}/seg000003.m4s",
        f"{b.name}/seg000001.m4s",
        f"{b.name}/seg000002.m4s",
        f"{b.name}/seg000003.m4s",
    ]
    assert result.total <= 45_000


def test_the_cap_leaves_unlisted_files_of_the_run_being_written(tmp_path: Path) -> None:
    done = write_run(tmp_path / SLUG_A, T0, [1.0] * 2, size=10_000)
    (done / "seg000002.m4s.tmp").write_bytes(bytes(10))  # left by a killed ffmpeg
    writing = write_run(tmp_path / SLUG_A, T0 + 5, [1.0], size=10_000, ended=False)
    (writing / "seg000001.m4s.tmp").write_bytes(bytes(50_000))
    prune(tmp_path, T0 + 10, max_bytes=1_000, active={writing})
    assert not done.exists()
    assert (writing / "seg000001.m4s.tmp").stat().st_size == 50_000
    assert segment_files(tmp_path) == []


def test_a_finished_run_that_recorded_nothing_is_removed(tmp_path: Path) -> None:
    run = tmp_path / SLUG_A / run_name(T0)
    run.mkdir(parents=True)
    (run / CLOCK_FILE).write_text("0\n")
    prune(tmp_path, T0 + 10)
    assert not (tmp_path / SLUG_A).exists()


def test_what_is_not_the_archives_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("mine")
    (tmp_path / SLUG_A).mkdir()
    (tmp_path / SLUG_A / "notes").mkdir()
    prune(tmp_path, T0 + 100 * DAY_S, max_bytes=1)
    assert (tmp_path / "README").exists()
    assert (tmp_path / SLUG_A / "notes").is_dir()
    assert os.listdir(tmp_path / SLUG_A) == ["notes"]
