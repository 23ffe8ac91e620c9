"""Reading the ISO BMFF boxes of fragmented MP4: the init segment and one fragment.

The parsing half of `fmp4` (design §12.5): `parse_init` describes an init segment by its
video track, `parse_fragment`/`parse_moof` say whether a fragment starts with a keyframe
and what time it covers. Only the boxes needed for that are parsed (the video track's
sample entry, `mdhd`, `trex`; each `moof`'s `mfhd`, `tfhd`, `tfdt`, `trun`); a field
running past its box's end raises `Fmp4Error`, so a hostile box costs no more than its
own bytes. `fmp4.Splitter` cuts a stream into the boxes these read.

Standard library only, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

H264_CODECS = frozenset({"avc1", "avc3"})
HEVC_CODECS = frozenset({"hvc1", "hev1"})

# ISO/IEC 14496-12 §8.8.3.1 sample flags.
SAMPLE_IS_NON_SYNC = 0x00010000
DEPENDS_ON_SHIFT = 24
DEPENDS_ON_NOTHING = 2  # an I picture, whatever the sync bit says

# tfhd flags (§8.8.7)
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_DESCRIPTION_INDEX = 0x000002
_TFHD_DURATION = 0x000008
_TFHD_SIZE = 0x000010
_TFHD_FLAGS = 0x000020

# trun flags (§8.8.8); the per-sample fields come in this order.
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SAMPLE_FIELDS = (0x000100, 0x000200, 0x000400, 0x000800)
_TRUN_FLAGS = 0x000400

# The visual sample entry's fixed part (§12.1.3) before its child boxes.
_VISUAL_ENTRY_SIZE = 78


class Fmp4Error(ValueError):
    """The bytes are not the fragmented MP4 this module can cut (the message says why)."""


@dataclass(frozen=True, slots=True)
class SampleDefaults:
    """A track's sample defaults from the init segment's `mvex`/`trex` box.

    `flags` is None when the track has no `trex`: then a fragment whose sample flags are
    all absent is not taken for a keyframe.
    """

    duration: int = 0
    size: int = 0
    flags: int | None = None


@dataclass(frozen=True, slots=True)
class InitSegment:
    """`ftyp` + `moov`: what a SourceBuffer must get first."""

    data: bytes
    codec: str
    mime_codec: str | None
    width: int
    height: int
    timescale: int
    track_id: int
    defaults: SampleDefaults = SampleDefaults()

    @property
    def is_h264(self) -> bool:
        return self.codec in H264_CODECS

    def mime(self) -> str:
        """The type for `MediaSource.addSourceBuffer`, e.g. `video/mp4; codecs="avc1.64001f"`."""
        if self.mime_codec is None:
            return "video/mp4"
        return f'video/mp4; codecs="{self.mime_codec}"'


@dataclass(frozen=True, slots=True)
class Fragment:
    """One `moof` + `mdat` (with any `styp`/`sidx`/`prft`/… received just before them).

    `keyframe`: the video track's first sample in it is a sync sample, so decoding can
    start here. `decode_time` (the `tfdt`, None without one) and `duration` are in the
    init segment's timescale.
    """

    data: bytes
    keyframe: bool
    decode_time: int | None
    duration: int
    sequence: int
    samples: int = 0


class _Reader:
    """Big-endian fields of one box's payload; running past its end is an Fmp4Error."""

    __slots__ = ("_box", "_data", "_pos")

    def __init__(self, data: bytes, box: str, pos: int = 0) -> None:
        self._data = data
        self._box = box
        self._pos = pos

    def take(self, count: int) -> bytes:
        end = self._pos + count
        if count < 0 or end > len(self._data):
            raise Fmp4Error(
                f"the {self._box!r} box is truncated: {len(self._data)} bytes of payload, "
                f"a field needs {end}"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def skip(self, count: int) -> _Reader:
        self.take(count)
        return self

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def full_box(self) -> tuple[int, int]:
        """A FullBox's version and 24-bit flags."""
        word = self.uint(4)
        return word >> 24, word & 0xFFFFFF


def show_box(fourcc: str) -> str:
    """A box type for a message: garbage shows as escapes, not as control characters."""
    return ascii(fourcc)


def read_header(
    buf: bytes | bytearray, pos: int = 0, end: int | None = None
) -> tuple[str, int, int] | None:
    """(type, header size, box size) of the box at `pos`; None until its header is there."""
    end = len(buf) if end is None else end
    if end - pos < 8:
        return None
    size = int.from_bytes(buf[pos : pos + 4], "big")
    fourcc = bytes(buf[pos + 4 : pos + 8]).decode("latin-1")
    header = 8
    if size == 1:
        if end - pos < 16:
            return None
        size = int.from_bytes(buf[pos + 8 : pos + 16], "big")
        header = 16
    if size == 0:
        # "Up to the end of the file": a live stream has no end to cut at.
        raise Fmp4Error(
            f"box {show_box(fourcc)} has size 0 (it runs to the end of the file), "
            "which a stream cannot be cut by; write fragmented MP4 (-movflags frag_keyframe)"
        )
    if size < header:
        raise Fmp4Error(
            f"box {show_box(fourcc)} claims {size} bytes, less than its own {header}-byte "
            "header: the stream is corrupt or not MP4"
        )
    return fourcc, header, size


def _spans(data: bytes) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, box end) of the boxes in data, without copying."""
    end = len(data)
    pos = 0
    while pos < end:
        found = read_header(data, pos, end)
        if found is None:
            raise Fmp4Error(f"{end - pos} stray bytes after the last box: a truncated box header")
        fourcc, header, size = found
        if pos + size > end:
            raise Fmp4Error(
                f"box {show_box(fourcc)} claims {size} bytes but only {end - pos} are left: "
                "it is truncated"
            )
        yield fourcc, pos + header, pos + size
        pos += size


def iter_boxes(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(type, payload) of each box in `data`, which must hold whole boxes only."""
    for fourcc, start, end in _spans(data):
        yield fourcc, data[start:end]


def _child(data: bytes, fourcc: str) -> bytes | None:
    """The payload of the first `fourcc` box in data, if any."""
    return next((payload for kind, payload in iter_boxes(data) if kind == fourcc), None)


def _need(data: bytes | None, fourcc: str, parent: str) -> bytes:
    if data is None:
        raise Fmp4Error(f"the {parent!r} box has no {fourcc!r} box")
    return data


def _path(data: bytes, *path: str) -> bytes | None:
    """The payload at a path of first children, e.g. ("mdia", "minf", "stbl")."""
    node: bytes | None = data
    for fourcc in path:
        if node is None:
            return None
        node = _child(node, fourcc)
    return node


# --- the init segment -------------------------------------------------------------


def _handler(trak: bytes) -> str | None:
    hdlr = _path(trak, "mdia", "hdlr")
    if hdlr is None:
        return None
    return _Reader(hdlr, "hdlr").skip(8).take(4).decode("latin-1")


def _track_header(trak: bytes) -> tuple[int, int, int]:
    """tkhd's track ID, width and height (whole pixels of the 16.16 fields)."""
    tkhd = _need(_child(trak, "tkhd"), "tkhd", "trak")
    reader = _Reader(tkhd, "tkhd")
    version, _ = reader.full_box()
    times = 8 if version == 1 else 4
    track_id = reader.skip(2 * times).uint(4)
    # reserved, duration, reserved[2], layer, alternate_group, volume, reserved, matrix
    reader.skip(4 + times + 8 + 8 + 36)
    return track_id, reader.uint(4) >> 16, reader.uint(4) >> 16


def _timescale(trak: bytes) -> int:
    mdhd = _need(_path(trak, "mdia", "mdhd"), "mdhd", "mdia")
    reader = _Reader(mdhd, "mdhd")
    version, _ = reader.full_box()
    timescale = reader.skip(16 if version == 1 else 8).uint(4)
    if timescale == 0:
        raise Fmp4Error("the video track's mdhd timescale is 0: its times mean nothing")
    return timescale


def _sample_entry(trak: bytes) -> tuple[str, bytes]:
    """The first sample entry's type and payload (the video track's codec)."""
    stsd = _need(_path(trak, "mdia", "minf", "stbl", "stsd"), "stsd", "trak's stbl")
    _Reader(stsd, "stsd").skip(8)  # version/flags, entry_count
    entry = next(iter_boxes(stsd[8:]), None)
    if entry is None:
        raise Fmp4Error("the video track's stsd has no sample entry: its codec is unknown")
    return entry


def _avc_codec(codec: str, children: bytes) -> str | None:
    """RFC 6381: the sample entry type, then profile, compatibility, level in hex."""
    avcc = _child(children, "avcC")
    if avcc is None or len(avcc) < 4:
        return None
    return f"{codec}.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def _hevc_codec(codec: str, children: bytes) -> str | None:
    """ISO/IEC 14496-15 Annex E, e.g. `hvc1.1.6.L93.B0`."""
    hvcc = _child(children, "hvcC")
    if hvcc is None or len(hvcc) < 13:
        return None
    space = ("", "A", "B", "C")[hvcc[1] >> 6]
    tier = "H" if hvcc[1] & 0x20 else "L"
    profile = hvcc[1] & 0x1F
    # The compatibility flags are written bit-reversed (flag 0 is the top bit).
    compat = int(f"{int.from_bytes(hvcc[2:6], 'big'):032b}"[::-1], 2)
    constraints = list(hvcc[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    tail = "".join(f".{byte:X}" for byte in constraints)
    return f"{codec}.{space}{profile}.{compat:X}.{tier}{hvcc[12]}{tail}"


def _mime_codec(codec: str, entry: bytes) -> str | None:
    if len(entry) < _VISUAL_ENTRY_SIZE:
        return None
    children = entry[_VISUAL_ENTRY_SIZE:]
    if codec in H264_CODECS:
        return _avc_codec(codec, children)
    if codec in HEVC_CODECS:
        return _hevc_codec(codec, children)
    return None


def _trex(moov: bytes, track_id: int) -> SampleDefaults:
    mvex = _child(moov, "mvex")
    if mvex is None:
        raise Fmp4Error(
            "the moov has no mvex box, so this is not fragmented MP4 "
            "(ffmpeg needs -movflags empty_moov+default_base_moof+frag_keyframe)"
        )
    for fourcc, payload in iter_boxes(mvex):
        if fourcc != "trex":
            continue
        reader = _Reader(payload, "trex").skip(4)
        if reader.uint(4) == track_id:
            reader.skip(4)  # default_sample_description_index
            return SampleDefaults(reader.uint(4), reader.uint(4), reader.uint(4))
    return SampleDefaults()


def _video_trak(moov: bytes) -> bytes:
    for fourcc, payload in iter_boxes(moov):
        if fourcc == "trak" and _handler(payload) == "vide":
            return payload
    raise Fmp4Error("the moov has no video track (no trak with an hdlr of type 'vide')")


def parse_init(data: bytes) -> InitSegment:
    """The init segment in `data` (whole boxes: `ftyp`, … `moov`), described by its video
    track."""
    moov = _need(_child(data, "moov"), "moov", "init segment")
    trak = _video_trak(moov)
    track_id, track_width, track_height = _track_header(trak)
    codec, entry = _sample_entry(trak)
    width = height = 0
    if len(entry) >= _VISUAL_ENTRY_SIZE:
        width, height = struct.unpack_from(">HH", entry, 24)
    return InitSegment(
        data=data,
        codec=codec,
        mime_codec=_mime_codec(codec, entry),
        width=int(width) or track_width,
        height=int(height) or track_height,
        timescale=_timescale(trak),
        track_id=track_id,
        defaults=_trex(moov, track_id),
    )


# --- fragments --------------------------------------------------------------------


@dataclass(slots=True)
class _Samples:
    """What one moof says about the video track's samples."""

    count: int = 0
    duration: int = 0
    first_flags: int | None = None
    decode_time: int | None = None


def is_sync(flags: int | None) -> bool:
    """Sample flags that let decoding start at the sample (None: nothing said, so no)."""
    if flags is None:
        return False
    depends_on = (flags >> DEPENDS_ON_SHIFT) & 0x3
    return not flags & SAMPLE_IS_NON_SYNC or depends_on == DEPENDS_ON_NOTHING


def _tfhd(payload: bytes, trex: SampleDefaults) -> tuple[int, SampleDefaults]:
    """tfhd's track ID and its defaults (each one it leaves out falls back to trex)."""
    reader = _Reader(payload, "tfhd")
    _, flags = reader.full_box()
    track_id = reader.uint(4)
    reader.skip(8 if flags & _TFHD_BASE_DATA_OFFSET else 0)
    reader.skip(4 if flags & _TFHD_DESCRIPTION_INDEX else 0)
    duration = reader.uint(4) if flags & _TFHD_DURATION else trex.duration
    size = reader.uint(4) if flags & _TFHD_SIZE else trex.size
    sample_flags = reader.uint(4) if flags & _TFHD_FLAGS else trex.flags
    return track_id, SampleDefaults(duration, size, sample_flags)


def _trun(payload: bytes, defaults: SampleDefaults, into: _Samples) -> None:
    reader = _Reader(payload, "trun")
    _, flags = reader.full_box()
    count = reader.uint(4)
    reader.skip(4 if flags & _TRUN_DATA_OFFSET else 0)
    first_flags = reader.uint(4) if flags & _TRUN_FIRST_SAMPLE_FLAGS else None
    fields = [field for field in _TRUN_SAMPLE_FIELDS if flags & field]
    # Checked against the payload before any loop: a hostile count cannot spin.
    table = reader.take(count * 4 * len(fields))
    rows = list(struct.iter_unpack(f">{len(fields)}I", table)) if fields else []
    if flags & _TRUN_DURATION:
        into.duration += sum(int(row[0]) for row in rows)
    else:
        into.duration += count * defaults.duration
    if into.count == 0 and count > 0:
        if first_flags is None and flags & _TRUN_FLAGS:
            first_flags = int(rows[0][fields.index(_TRUN_FLAGS)])
        into.first_flags = defaults.flags if first_flags is None else first_flags
    into.count += count


def _decode_time(payload: bytes) -> int:
    reader = _Reader(payload, "tfdt")
    version, _ = reader.full_box()
    return reader.uint(8 if version == 1 else 4)


def _traf(payload: bytes, track_id: int, trex: SampleDefaults, into: _Samples) -> None:
    """Adds what a traf says about the track `track_id`; other tracks' trafs add nothing."""
    tfhd = _need(_child(payload, "tfhd"), "tfhd", "traf")
    traf_track, defaults = _tfhd(tfhd, trex)
    if traf_track != track_id:
        return
    for fourcc, child in iter_boxes(payload):
        if fourcc == "tfdt" and into.decode_time is None:
            into.decode_time = _decode_time(child)
        elif fourcc == "trun":
            _trun(child, defaults, into)


def parse_moof(moof: bytes, data: bytes, init: InitSegment) -> Fragment:
    """The fragment `data` whose moof payload is `moof`, read for the init's video track."""
    sequence: int | None = None
    samples = _Samples()
    for fourcc, child in iter_boxes(moof):
        if fourcc == "mfhd":
            sequence = _Reader(child, "mfhd").skip(4).uint(4)
        elif fourcc == "traf":
            _traf(child, init.track_id, init.defaults, samples)
    if sequence is None:
        raise Fmp4Error("a moof has no mfhd (sequence number): the fragment is malformed")
    return Fragment(
        data=data,
        keyframe=samples.count > 0 and is_sync(samples.first_flags),
        decode_time=samples.decode_time,
        duration=samples.duration,
        sequence=sequence,
        samples=samples.count,
    )


def parse_fragment(data: bytes, init: InitSegment) -> Fragment:
    """The fragment in `data` (whole boxes, one `moof`), read for the init's video track."""
    moofs = [(start, end) for fourcc, start, end in _spans(data) if fourcc == "moof"]
    if len(moofs) != 1:
        raise Fmp4Error(f"a fragment has exactly one moof box, this one has {len(moofs)}")
    start, end = moofs[0]
    return parse_moof(data[start:end], data, init)
