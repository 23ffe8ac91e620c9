"""Cutting ffmpeg's fragmented MP4 into what Media Source Extensions want (design §12.5).

The live puller runs `ffmpeg … -c copy -f mp4 -movflags
empty_moov+default_base_moof+frag_keyframe -frag_duration 200000 pipe:1`. Its output is
a stream of top-level ISO BMFF boxes: `ftyp` `moov` (the **init segment**), then pairs of
`moof` `mdat` (the **fragments**), and an `mfra` index when ffmpeg exits. `Splitter` cuts
that stream, whatever the read sizes, into `InitSegment` and `Fragment` items, byte for
byte as received, so a browser can append them to a SourceBuffer unchanged.
`KeyframeCache` keeps what a viewer joining late needs to see a picture at once.

Only the boxes needed for that are parsed (the video track's sample entry, `mdhd`,
`trex`; each `moof`'s `mfhd`, `tfhd`, `tfdt`, `trun`); everything else is passed through.
Anything that does not frame as boxes raises `Fmp4Error`, and nothing grows without a
bound: a hostile or broken stream costs at most `max_box` bytes of memory.

Standard library only, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAX_BOX = 16 * 1024 * 1024
MAX_CACHE = 8 * 1024 * 1024

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

# Top-level boxes that may only start an init segment.
_INIT_BOXES = frozenset({"ftyp", "moov"})


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


def _show(fourcc: str) -> str:
    """A box type for a message: garbage shows as escapes, not as control characters."""
    return ascii(fourcc)


def _read_header(
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
            f"box {_show(fourcc)} has size 0 (it runs to the end of the file), "
            "which a stream cannot be cut by; write fragmented MP4 (-movflags frag_keyframe)"
        )
    if size < header:
        raise Fmp4Error(
            f"box {_show(fourcc)} claims {size} bytes, less than its own {header}-byte "
            "header: the stream is corrupt or not MP4"
        )
    return fourcc, header, size


def _spans(data: bytes) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, box end) of the boxes in data, without copying."""
    end = len(data)
    pos = 0
    while pos < end:
        found = _read_header(data, pos, end)
        if found is None:
            raise Fmp4Error(f"{end - pos} stray bytes after the last box: a truncated box header")
        fourcc, header, size = found
        if pos + size > end:
            raise Fmp4Error(
                f"box {_show(fourcc)} claims {size} bytes but only {end - pos} are left: "
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


# --- the stream -------------------------------------------------------------------


class Splitter:
    """Cuts a byte stream of fragmented MP4 into `InitSegment` and `Fragment` items.

    The stream must start with `ftyp`. A later `ftyp` or `moov` (ffmpeg restarted into
    the same pipe) starts a new init segment: fragments before it do not decode with it.
    Boxes other than moof/mdat after the init segment (`styp`, `sidx`, `prft`, …) go
    with the next fragment; those never followed by one (ffmpeg's closing `mfra`) are
    held, counted in `buffered`, and never emitted.

    Memory is bounded by `max_box`: a box, an init segment or a fragment larger than it
    raises Fmp4Error as soon as its header says so. After an Fmp4Error the splitter
    refuses further input (start a new one with the new stream).
    """

    def __init__(self, max_box: int = MAX_BOX) -> None:
        if max_box < 16:
            raise ValueError(f"max_box must be at least 16 bytes, not {max_box}")
        self.max_box = max_box
        self.init: InitSegment | None = None
        self._buf = bytearray()
        self._parts: list[bytes] = []  # the boxes of the item being assembled
        self._parts_size = 0
        self._in_init = False  # between an ftyp and its moov
        self._moof: bytes | None = None  # payload of a moof waiting for its mdat
        self._error: Fmp4Error | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in an item."""
        return len(self._buf) + self._parts_size

    def feed(self, data: bytes) -> list[InitSegment | Fragment]:
        """The items completed by `data`, in stream order (any chunk size, even 1 byte).

        Raises Fmp4Error when the stream breaks; the items completed earlier in the same
        `data` are lost with it, as the stream cannot go on anyway.
        """
        if self._error is not None:
            raise Fmp4Error(f"the splitter stopped at an earlier error: {self._error}")
        self._buf += data
        items: list[InitSegment | Fragment] = []
        try:
            while (box := self._next_box()) is not None:
                item = self._take(*box)
                if item is not None:
                    items.append(item)
        except Fmp4Error as exc:
            self._fail(exc)
            raise
        return items

    def _fail(self, exc: Fmp4Error) -> None:
        self._error = exc
        self._buf = bytearray()
        self._parts = []
        self._parts_size = 0
        self._moof = None

    def _next_box(self) -> tuple[str, int, bytes] | None:
        """The next whole top-level box taken off the buffer, or None until it is there."""
        found = _read_header(self._buf)
        if found is None:
            return None
        fourcc, header, size = found
        if size > self.max_box:
            raise Fmp4Error(
                f"box {_show(fourcc)} claims {size} bytes, more than max_box={self.max_box}: "
                "the stream is corrupt, or max_box is too small for it"
            )
        if self._item_size(fourcc, size) > self.max_box:
            raise Fmp4Error(
                f"the {'init segment' if self._in_init else 'fragment'} being assembled "
                f"would exceed max_box={self.max_box} bytes with box {_show(fourcc)} "
                f"({self._parts_size} + {size}): too many boxes without a moof/mdat"
            )
        if len(self._buf) < size:
            return None
        box = bytes(self._buf[:size])
        del self._buf[:size]
        return fourcc, header, box

    def _item_size(self, fourcc: str, size: int) -> int:
        """The size of the item being assembled once this box joins it."""
        starts_new = fourcc == "ftyp" or (fourcc == "moov" and not self._in_init)
        return size if starts_new else self._parts_size + size

    def _take(self, fourcc: str, header: int, box: bytes) -> InitSegment | Fragment | None:
        if fourcc in _INIT_BOXES:
            return self._take_init(fourcc, box)
        if self.init is None and not self._in_init:
            raise Fmp4Error(
                f"the stream starts with box {_show(fourcc)}, not ftyp: it is not fragmented "
                "MP4 from its beginning (ffmpeg -f mp4 -movflags empty_moov+frag_keyframe)"
            )
        if self._in_init and fourcc in ("moof", "mdat"):
            raise Fmp4Error(f"box {fourcc!r} came before the moov: there is no init segment")
        self._add(box)
        if fourcc == "moof":
            if self._moof is not None:
                raise Fmp4Error("two moof boxes without an mdat between them")
            self._moof = box[header:]
        elif fourcc == "mdat":
            return self._take_mdat()
        return None

    def _add(self, box: bytes) -> None:
        self._parts.append(box)
        self._parts_size += len(box)

    def _reset(self) -> bytes:
        data = b"".join(self._parts)
        self._parts = []
        self._parts_size = 0
        self._moof = None
        return data

    def _take_init(self, fourcc: str, box: bytes) -> InitSegment | None:
        if self._moof is not None:
            raise Fmp4Error(f"box {fourcc!r} came after a moof that had no mdat")
        if fourcc == "moov" and self.init is None and not self._in_init:
            raise Fmp4Error("the stream starts with a moov, not ftyp: its beginning is missing")
        if fourcc == "ftyp":
            # What was held from the previous run (its mfra) belongs to no fragment.
            self._reset()
            self._add(box)
            self._in_init = True
            return None
        if not self._in_init:
            self._reset()
        self._add(box)
        self._in_init = False
        self.init = parse_init(self._reset())
        return self.init

    def _take_mdat(self) -> Fragment:
        moof = self._moof
        if moof is None:
            raise Fmp4Error("an mdat came without a moof before it: not fragmented MP4")
        if self.init is None:  # a moof before any moov is refused in _take
            raise Fmp4Error("a fragment came before any init segment")
        return parse_moof(moof, self._reset(), self.init)


class KeyframeCache:
    """The fragments a viewer joining late needs: the newest keyframe fragment and all
    after it, so its decoder can start at once.

    A keyframe fragment replaces everything older; fragments before the first keyframe
    are not kept. Bounded by `max_bytes`: a fragment that would take it over that makes
    the cache drop everything and keep nothing until the next keyframe fragment (a group
    of pictures without its start cannot be decoded, so a trimmed one would be useless).
    """

    def __init__(self, max_bytes: int = MAX_CACHE) -> None:
        self.max_bytes = max_bytes
        self._fragments: list[Fragment] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes of the fragments held."""
        return self._size

    def add(self, fragment: Fragment) -> None:
        if fragment.keyframe:
            self.clear()
        elif not self._fragments:
            return
        self._fragments.append(fragment)
        self._size += len(fragment.data)
        if self._size > self.max_bytes:
            self.clear()

    def clear(self) -> None:
        """Forget everything (e.g. on a new init segment, which old fragments do not fit)."""
        self._fragments = []
        self._size = 0

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def keyframe(self) -> Fragment | None:
        """The newest keyframe fragment, if the cache holds one."""
        return self._fragments[0] if self._fragments else None
