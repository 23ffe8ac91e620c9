"""The fMP4 splitter and keyframe cache, on real ffmpeg output (design §12.5).

Each expectation is checked against something other than the module itself: ffprobe's
view of the streams and of the decoded frames, the avcC bytes found by a plain byte
search, ffmpeg decoding what a late joiner would get, and hand-built boxes for the
cases ffmpeg does not write.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_mock.video.fmp4 import (
    Fmp4Error,
    Fragment,
    InitSegment,
    KeyframeCache,
    SampleDefaults,
    Splitter,
    iter_boxes,
    parse_fragment,
    parse_init,
)
from tests.examples import examples

FRAGMENTED = ["-f", "mp4", "-movflags", "empty_moov+default_base_moof+frag_keyframe"]
FRAGMENTED += ["-frag_duration", "200000"]
SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]

# Hypothesis' deadline is a wall-clock assertion, which these tests must not make.
FUZZ = settings(
    deadline=None, max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow]
)
CHUNKS = settings(deadline=None, max_examples=examples(40))


# --- real ffmpeg output -----------------------------------------------------------


@dataclass(frozen=True)
class Video:
    path: Path
    data: bytes
    stream: dict[str, Any]  # ffprobe -show_streams, the video stream
    frames: list[dict[str, Any]]  # ffprobe -show_frames: decoded, in order


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (Debian's ffmpeg package) is needed to make real fMP4")
    return path


def _probe(path: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-select_streams",
            "v:0",
            *args,
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _make(directory: Path, name: str, encoder: list[str], seconds: int = 3) -> Video:
    path = directory / name
    gop = ["-g", "25", "-bf", "0", "-pix_fmt", "yuv420p"]
    quiet = ["-hide_banner", "-loglevel", "error"]
    args = [_tool("ffmpeg"), *quiet, *SOURCE, "-t", str(seconds), *encoder, *gop, *FRAGMENTED]
    subprocess.run([*args, str(path)], check=True)
    stream = _probe(path, "-show_streams")["streams"][0]
    frames = _probe(path, "-show_frames", "-show_entries", "frame=pts,key_frame")["frames"]
    return Video(path, path.read_bytes(), stream, frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Video]:
    directory = tmp_path_factory.mktemp("fmp4")
    x265 = ["-c:v", "libx265", "-x265-params", "log-level=error", "-tag:v", "hvc1"]
    baseline = ["-c:v", "libx264", "-profile:v", "baseline", "-level:v", "3.0"]
    return {
        "h264": _make(directory, "h264.mp4", ["-c:v", "libx264", "-profile:v", "high"]),
        "baseline": _make(directory, "baseline.mp4", baseline, seconds=1),
        "h265": _make(directory, "h265.mp4", x265),
    }


@pytest.fixture(scope="module")
def h264(videos: dict[str, Video]) -> Video:
    return videos["h264"]


def split(data: bytes, splitter: Splitter | None = None) -> list[InitSegment | Fragment]:
    return (splitter or Splitter()).feed(data)


def cut(items: list[InitSegment | Fragment]) -> tuple[InitSegment, list[Fragment]]:
    init, *rest = items
    assert isinstance(init, InitSegment)
    fragments = [item for item in rest if isinstance(item, Fragment)]
    assert len(fragments) == len(rest)
    return init, fragments


def keyframe_times(video: Video) -> set[int]:
    return {frame["pts"] for frame in video.frames if frame["key_frame"] == 1}


# --- the init segment -------------------------------------------------------------


def test_h264_init_segment_matches_ffprobe_and_the_avcc_bytes(h264: Video) -> None:
    init, _ = cut(split(h264.data))
    assert init.codec == "avc1" == h264.stream["codec_tag_string"]
    assert init.is_h264
    assert (init.width, init.height) == (320, 240) == (h264.stream["width"], h264.stream["height"])
    # A plain byte search for the avcC box, not a box walk.
    at = h264.data.index(b"avcC") + 4
    version, profile, compat, level = h264.data[at : at + 4]
    assert version == 1
    assert (profile, level) == (100, h264.stream["level"])  # High = 100
    assert init.mime_codec == f"avc1.{profile:02x}{compat:02x}{level:02x}"
    assert init.mime() == f'video/mp4; codecs="{init.mime_codec}"'
    assert init.timescale == 12800  # ffmpeg's choice for 25 fps
    assert h264.stream["time_base"] == f"1/{init.timescale}"
    assert init.track_id == 1
    # Exactly ftyp + moov, as received.
    assert [fourcc for fourcc, _ in iter_boxes(init.data)] == ["ftyp", "moov"]
    assert h264.data.startswith(init.data)


def test_baseline_profile_and_level_reach_the_codec_string(videos: dict[str, Video]) -> None:
    video = videos["baseline"]
    init, _ = cut(split(video.data))
    assert video.stream["profile"] == "Constrained Baseline"
    assert video.stream["level"] == 30
    assert init.mime_codec is not None
    assert init.mime_codec.startswith("avc1.42")  # Baseline = 66
    assert init.mime_codec.endswith("1e")  # level 3.0


def test_h265_is_hvc1_and_not_h264(videos: dict[str, Video]) -> None:
    video = videos["h265"]
    init, fragments = cut(split(video.data))
    assert init.codec == "hvc1" == video.stream["codec_tag_string"]
    assert not init.is_h264
    assert (init.width, init.height) == (320, 240)
    assert video.stream["profile"] == "Main"
    # Main (1), compatible with Main and Main 10 (flags 1, 2 reversed: 6), Main tier.
    assert init.mime_codec is not None
    assert re.fullmatch(
        rf"hvc1\.1\.6\.L{video.stream['level']}(\.[0-9A-F]{{1,2}})*", init.mime_codec
    )
    assert fragments
    assert fragments[0].keyframe


# --- fragments --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["h264", "h265", "baseline"])
def test_keyframe_flags_match_the_decoded_frames(videos: dict[str, Video], name: str) -> None:
    video = videos[name]
    _, fragments = cut(split(video.data))
    keys = keyframe_times(video)
    starts = {fragment.decode_time for fragment in fragments}
    # frag_keyframe: every keyframe starts a fragment…
    assert keys <= starts
    # …and the fragments flagged are exactly those.
    for fragment in fragments:
        assert fragment.keyframe == (fragment.decode_time in keys), fragment.sequence
    if name != "baseline":
        assert 1 < sum(f.keyframe for f in fragments) < len(fragments)


@pytest.mark.parametrize("name", ["h264", "h265"])
def test_fragment_times_cover_every_frame_once(videos: dict[str, Video], name: str) -> None:
    video = videos[name]
    init, fragments = cut(split(video.data))
    assert [f.sequence for f in fragments] == list(range(1, len(fragments) + 1))
    assert sum(f.samples for f in fragments) == len(video.frames)
    assert fragments[0].decode_time == 0
    for before, after in pairwise(fragments):
        assert before.decode_time is not None
        assert after.decode_time == before.decode_time + before.duration
    # 25 fps in the init's timescale, one sample duration per frame.
    assert all(f.duration == f.samples * init.timescale // 25 for f in fragments)
    # frag_duration 200000 µs: at most 5 frames at 25 fps.
    assert max(f.samples for f in fragments) == 5


def test_init_and_fragments_are_the_stream_byte_for_byte(h264: Video) -> None:
    splitter = Splitter()
    init, fragments = cut(split(h264.data, splitter))
    joined = init.data + b"".join(f.data for f in fragments)
    assert joined == h264.data[: len(joined)]
    # What is left is ffmpeg's closing index, held for a fragment that never comes.
    rest = h264.data[len(joined) :]
    assert splitter.buffered == len(rest)
    assert [fourcc for fourcc, _ in iter_boxes(rest)] == ["mfra"]
    for fragment in fragments:
        boxes = [fourcc for fourcc, _ in iter_boxes(fragment.data)]
        assert boxes == ["moof", "mdat"]
        assert parse_fragment(fragment.data, init) == fragment


def test_one_byte_at_a_time_gives_the_same_items(h264: Video) -> None:
    expected = split(h264.data)
    splitter = Splitter()
    got: list[InitSegment | Fragment] = []
    for i in range(len(h264.data)):
        got += splitter.feed(h264.data[i : i + 1])
        assert splitter.buffered <= splitter.max_box
    assert got == expected


@CHUNKS
@given(sizes=st.lists(st.integers(min_value=0, max_value=40_000), min_size=1, max_size=50))
def test_any_chunking_gives_the_same_items(h264: Video, sizes: list[int]) -> None:
    expected = split(h264.data)
    splitter = Splitter()
    got: list[InitSegment | Fragment] = []
    pos = index = 0
    while pos < len(h264.data):
        size = sizes[index % len(sizes)] or 1
        got += splitter.feed(h264.data[pos : pos + size])
        pos += size
        index += 1
    assert got == expected
    assert splitter.init == expected[0]


def test_a_restarted_ffmpeg_gives_a_new_init_segment(h264: Video) -> None:
    splitter = Splitter()
    first = split(h264.data, splitter)
    second = split(h264.data, splitter)
    # The first run's mfra belongs to nothing and is dropped with the new ftyp.
    assert second == first
    assert splitter.init is second[0]
    assert splitter.buffered == len(h264.data) - sum(len(item.data) for item in first)


def test_a_truncated_stream_is_not_an_error_only_unfinished(h264: Video) -> None:
    assert Splitter().feed(b"") == []
    for end in (4, 20, 30, 500, 12_000, len(h264.data) // 2):
        splitter = Splitter()
        items = split(h264.data[:end], splitter)
        assert sum(len(item.data) for item in items) + splitter.buffered == end
        assert items == split(h264.data)[: len(items)]


# --- the keyframe cache and the late joiner ---------------------------------------


def test_the_cache_holds_the_last_gop_from_its_keyframe(h264: Video) -> None:
    _, fragments = cut(split(h264.data))
    cache = KeyframeCache()
    for fragment in fragments:
        cache.add(fragment)
    last_key = max(i for i, f in enumerate(fragments) if f.keyframe)
    assert cache.fragments() == fragments[last_key:]
    assert cache.keyframe() is fragments[last_key]
    assert cache.fragments()[0].keyframe
    assert not any(f.keyframe for f in cache.fragments()[1:])
    assert cache.size == sum(len(f.data) for f in fragments[last_key:])


def decode(path: Path) -> tuple[str, int]:
    """What ffmpeg's decoder says about the file, and how many frames it got out of it."""
    decoded = subprocess.run(
        [_tool("ffmpeg"), "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    streams = _probe(path, "-count_frames", "-show_entries", "stream=nb_read_frames")
    return decoded.stderr, int(streams["streams"][0]["nb_read_frames"])


@pytest.mark.parametrize("name", ["h264", "h265"])
def test_init_plus_cache_decodes_from_its_first_frame(
    videos: dict[str, Video], name: str, tmp_path: Path
) -> None:
    init, fragments = cut(split(videos[name].data))
    cache = KeyframeCache()
    for fragment in fragments:
        cache.add(fragment)
    cached = tmp_path / "cached.mp4"
    cached.write_bytes(init.data + b"".join(f.data for f in cache.fragments()))
    assert decode(cached) == ("", sum(f.samples for f in cache.fragments()))
    # The control: starting after a keyframe, the decoder complains (H.265: missing
    # references) or drops the frames up to the next keyframe (H.264).
    late = next(i for i, f in enumerate(fragments) if f.keyframe and i > 0) - 2
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(init.data + b"".join(f.data for f in fragments[late:]))
    assert decode(broken) != ("", sum(f.samples for f in fragments[late:]))


def _fragment(keyframe: bool, size: int, sequence: int = 1) -> Fragment:
    return Fragment(b"x" * size, keyframe, decode_time=None, duration=0, sequence=sequence)


def test_the_cache_keeps_nothing_before_the_first_keyframe() -> None:
    cache = KeyframeCache()
    cache.add(_fragment(False, 10))
    assert cache.fragments() == []
    assert cache.keyframe() is None
    assert cache.size == 0
    key = _fragment(True, 10, 2)
    cache.add(key)
    cache.add(_fragment(False, 5, 3))
    assert cache.keyframe() is key
    assert cache.size == 15
    newer = _fragment(True, 7, 4)
    cache.add(newer)
    assert cache.fragments() == [newer]
    assert cache.size == 7


def test_an_overfull_cache_waits_for_the_next_keyframe() -> None:
    cache = KeyframeCache(max_bytes=100)
    cache.add(_fragment(True, 60))
    cache.add(_fragment(False, 30))
    assert cache.size == 90
    cache.add(_fragment(False, 30))  # 120 > 100
    assert cache.fragments() == []
    assert cache.size == 0
    cache.add(_fragment(False, 1))  # no keyframe to start from: still nothing
    assert cache.fragments() == []
    cache.add(_fragment(True, 101))  # a keyframe fragment too big on its own
    assert cache.fragments() == []
    key = _fragment(True, 100)
    cache.add(key)
    assert cache.fragments() == [key]
    cache.clear()
    assert cache.keyframe() is None


# --- hand-built boxes: what ffmpeg does not write ---------------------------------


def box(fourcc: str, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), fourcc.encode("latin-1")) + body


def large_box(fourcc: str, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4sQ", 1, fourcc.encode("latin-1"), 16 + len(body)) + body


def full(fourcc: str, version: int, flags: int, *payload: bytes) -> bytes:
    return box(fourcc, struct.pack(">I", version << 24 | flags), *payload)


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


NON_SYNC = 0x01010000
SYNC = 0x02000000
I_NOT_SYNC = 0x02010000  # depends on nothing, yet flagged non-sync


def tfhd(track: int, flags: int = 0, *fields: int) -> bytes:
    return full("tfhd", 0, flags, u32(track, *fields))


def trun(count: int, flags: int, *fields: int) -> bytes:
    return full("trun", 0, flags, u32(count, *fields))


def moof(*trafs: bytes, sequence: int = 7) -> bytes:
    return box("moof", full("mfhd", 0, 0, u32(sequence)), *trafs)


def traf(*children: bytes) -> bytes:
    return box("traf", *children)


def fragment_of(init: InitSegment, *trafs: bytes) -> Fragment:
    return parse_fragment(moof(*trafs) + box("mdat", b"\0" * 8), init)


@pytest.fixture(scope="module")
def init(h264: Video) -> InitSegment:
    return cut(split(h264.data))[0]


def test_ffmpeg_writes_trex_flags_zero(init: InitSegment) -> None:
    # By the letter of ISO BMFF, 0 means "sync sample": ffmpeg relies on every tfhd
    # carrying its own default flags. The parser must not read trex as non-sync.
    assert init.defaults == SampleDefaults(duration=0, size=0, flags=0)
    assert parse_init(init.data) == init


def test_init_segments_ffmpeg_does_not_write(init: InitSegment) -> None:
    unknown = parse_init(init.data.replace(b"avcC", b"avcX"))
    assert (unknown.codec, unknown.mime_codec, unknown.mime()) == ("avc1", None, "video/mp4")
    at = init.data.index(b"trex") + 8  # past version and flags: the track ID
    other_track = init.data[:at] + u32(2) + init.data[at + 4 :]
    assert parse_init(other_track).defaults == SampleDefaults()
    with pytest.raises(Fmp4Error, match="not fragmented MP4"):
        parse_init(init.data.replace(b"mvex", b"mvey"))
    with pytest.raises(Fmp4Error, match="no video track"):
        parse_init(init.data.replace(b"vide", b"soun"))


def test_a_moov_alone_after_the_stream_began_is_a_new_init_segment(
    h264: Video, init: InitSegment
) -> None:
    splitter = Splitter()
    first = split(h264.data, splitter)
    moov = next(
        box("moov", payload) for fourcc, payload in iter_boxes(init.data) if fourcc == "moov"
    )
    (again,) = split(moov, splitter)
    assert again == replace(init, data=moov)
    assert splitter.init is again
    assert splitter.buffered == 0  # the mfra held before it belongs to nothing
    assert split(b"".join(item.data for item in first[1:]), splitter) == first[1:]


def test_sample_flags_are_read_in_order_of_precedence(init: InitSegment) -> None:
    no_trex = replace(init, defaults=SampleDefaults())
    # Nothing anywhere, no trex: not a keyframe.
    assert not fragment_of(no_trex, traf(tfhd(1), trun(3, 0))).keyframe
    # trex alone decides when nothing overrides it.
    assert fragment_of(init, traf(tfhd(1), trun(3, 0))).keyframe
    assert not fragment_of(
        replace(init, defaults=SampleDefaults(flags=NON_SYNC)), traf(tfhd(1), trun(1, 0))
    ).keyframe
    # tfhd default_sample_flags override trex.
    assert not fragment_of(init, traf(tfhd(1, 0x20, NON_SYNC), trun(3, 0))).keyframe
    # first_sample_flags override tfhd.
    assert fragment_of(init, traf(tfhd(1, 0x20, NON_SYNC), trun(3, 0x4, SYNC))).keyframe
    # Per-sample flags: only the first sample's count.
    per_sample = trun(2, 0x400, NON_SYNC, SYNC)
    assert not fragment_of(init, traf(tfhd(1, 0x20, SYNC), per_sample)).keyframe
    per_sample = trun(2, 0x400, SYNC, NON_SYNC)
    assert fragment_of(no_trex, traf(tfhd(1, 0x20, NON_SYNC), per_sample)).keyframe
    # sample_depends_on == 2 is an I picture, whatever the sync bit says.
    assert fragment_of(no_trex, traf(tfhd(1, 0x20, I_NOT_SYNC), trun(1, 0))).keyframe


def test_durations_times_and_other_tracks(init: InitSegment) -> None:
    other = traf(tfhd(2, 0x20, SYNC), full("tfdt", 1, 0, struct.pack(">Q", 99)), trun(4, 0))
    video = traf(
        tfhd(1, 0x08 | 0x20, 512, NON_SYNC),
        full("tfdt", 0, 0, u32(1024)),  # version 0: 32-bit time
        trun(2, 0x1 | 0x100 | 0x200, 0, 100, 10, 200, 20),  # per-sample durations
        trun(3, 0x4, SYNC),  # the tfhd default duration, not the first sample
    )
    fragment = fragment_of(init, other, video)
    assert fragment.decode_time == 1024
    assert fragment.duration == 100 + 200 + 3 * 512
    assert fragment.samples == 5
    assert fragment.sequence == 7
    assert not fragment.keyframe  # the first sample of the track is in the first trun
    # Only another track's traf: nothing about the video.
    alone = fragment_of(init, other)
    assert (alone.keyframe, alone.decode_time, alone.duration, alone.samples) == (
        False,
        None,
        0,
        0,
    )


def test_a_huge_sample_count_without_a_table_is_arithmetic(init: InitSegment) -> None:
    fragment = fragment_of(init, traf(tfhd(1, 0x08, 1), trun(2**32 - 1, 0)))
    assert fragment.duration == 2**32 - 1


def test_a_moof_without_traf_is_a_fragment_without_samples(init: InitSegment) -> None:
    splitter = Splitter()
    split(init.data, splitter)
    data = moof() + box("mdat", b"abc")
    (fragment,) = split(data, splitter)
    assert fragment == Fragment(data, False, None, 0, 7, 0)


def test_boxes_before_a_moof_go_with_it_and_64_bit_sizes_work(
    h264: Video, init: InitSegment
) -> None:
    _, fragments = cut(split(h264.data))
    (_, moof_payload), (_, mdat_payload) = iter_boxes(fragments[1].data)
    extra = box("styp", b"msdh", u32(0), b"msdhmsix") + full("prft", 1, 0, bytes(16))
    data = extra + large_box("moof", moof_payload) + large_box("mdat", mdat_payload)
    splitter = Splitter()
    split(init.data, splitter)
    got: list[InitSegment | Fragment] = []
    for i in range(len(data)):
        got += splitter.feed(data[i : i + 1])
    assert got == [replace(fragments[1], data=data)]


def test_max_box_bounds_the_box_and_the_fragment(init: InitSegment) -> None:
    splitter = Splitter(max_box=len(init.data) + 100)
    split(init.data, splitter)
    with pytest.raises(Fmp4Error, match="max_box"):
        # Refused by its header alone.
        splitter.feed(struct.pack(">I4s", splitter.max_box + 1, b"mdat"))
    splitter = Splitter(max_box=len(init.data) + 100)
    split(init.data, splitter)
    with pytest.raises(Fmp4Error, match="max_box"):
        splitter.feed(box("free", b"12345678") * 100)  # boxes that never reach a moof+mdat
    with pytest.raises(Fmp4Error, match="earlier error"):
        splitter.feed(b"")
    with pytest.raises(ValueError, match="max_box"):
        Splitter(max_box=8)


# --- hostile input -----------------------------------------------------------------


FTYP = box("ftyp", b"isom", u32(512), b"isomiso6")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "max_box"),
        (b"\0\0\0\x10garbage.garbage.", "not ftyp"),
        (struct.pack(">I4sQ", 1, b"ftyp", 2**40), "max_box"),
        (struct.pack(">I4s", 0xFFFFFFFF, b"ftyp"), "max_box"),
        (struct.pack(">I4s", 0, b"ftyp"), "size 0"),
        (struct.pack(">I4sQ", 1, b"ftyp", 0), "size 0"),
        (struct.pack(">I4s", 1, b"ftyp") + struct.pack(">Q", 8), "header"),
        (struct.pack(">I4s", 7, b"ftyp"), "header"),
        (box("moov"), "moov, not ftyp"),
        (box("moof") + box("mdat"), "not ftyp"),
        (FTYP + box("moof"), "before the moov"),
        (FTYP + box("moov", box("trak", bytes(4))), "truncated"),
        (FTYP + box("moov", box("udta")), "no video track"),
    ],
)
def test_hostile_streams_raise_fmp4_error(data: bytes, reason: str) -> None:
    with pytest.raises(Fmp4Error, match=reason):
        Splitter().feed(data)


@pytest.mark.parametrize(
    ("after_init", "reason"),
    [
        (box("mdat", b"x"), "without a moof"),
        (moof() + moof(), "two moof"),
        (moof() + FTYP, "no mdat"),
        (box("moof", traf(tfhd(1))) + box("mdat"), "no mfhd"),
        (moof(traf(trun(1, 0))) + box("mdat"), "no 'tfhd'"),
        (moof(traf(tfhd(1), trun(2**32 - 1, 0x400))) + box("mdat"), "truncated"),
        (moof(traf(full("tfhd", 0, 0x20, u32(1)))) + box("mdat"), "truncated"),
        (box("moof", box("mfhd", bytes(3))) + box("mdat"), "truncated"),
        (box("moof", struct.pack(">I4s", 99, b"mfhd")) + box("mdat"), "truncated"),
    ],
)
def test_hostile_fragments_raise_fmp4_error(
    init: InitSegment, after_init: bytes, reason: str
) -> None:
    splitter = Splitter()
    split(init.data, splitter)
    with pytest.raises(Fmp4Error, match=re.escape(reason)):
        split(after_init, splitter)


def _only_fmp4_errors(splitter: Splitter, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            splitter.feed(chunk)
            assert splitter.buffered <= splitter.max_box
    except Fmp4Error:
        pass


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_raise_only_fmp4_error(data: bytes) -> None:
    _only_fmp4_errors(Splitter(max_box=1 << 16), [data])


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_boxes_after_a_real_init_raise_only_fmp4_error(
    init: InitSegment, data: bytes
) -> None:
    _only_fmp4_errors(Splitter(max_box=1 << 16), [init.data, data])


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=1_000), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    cut_at=st.integers(min_value=1, max_value=40_000),
)
def test_corrupted_real_streams_raise_only_fmp4_error(
    h264: Video, edits: list[tuple[int, int]], cut_at: int
) -> None:
    # The first 1,000 bytes hold the moov and the first moof: their fields, not the mdat.
    data = bytearray(h264.data[:40_000])
    for at, value in edits:
        data[at] = value
    _only_fmp4_errors(Splitter(max_box=1 << 17), [bytes(data[:cut_at]), bytes(data[cut_at:])])
