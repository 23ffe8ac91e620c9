"""Cutting ffmpeg's fragmented MP4 into what Media Source Extensions want (design §12.5).

The live puller runs `ffmpeg … -c copy -f mp4 -movflags
empty_moov+default_base_moof+frag_keyframe -frag_duration 200000 pipe:1`. Its output is
a stream of top-level ISO BMFF boxes: `ftyp` `moov` (the **init segment**), then pairs of
`moof` `mdat` (the **fragments**), and an `mfra` index when ffmpeg exits. `Splitter` cuts
that stream, whatever the read sizes, into `InitSegment` and `Fragment` items, byte for
byte as received, so a browser can append them to a SourceBuffer unchanged.
`KeyframeCache` keeps what a viewer joining late needs to see a picture at once.

Only the boxes needed for that are parsed (the video track's sample entry, `mdhd`,
`trex`; each `moof`'s `mfhd`, `tfhd`, `tfdt`, `trun`: `fmp4_boxes` reads them);
everything else is passed through. Anything that does not frame as boxes raises
`Fmp4Error`, and nothing grows without a bound: a hostile or broken stream costs at
most `max_box` bytes of memory.

Standard library only, no I/O.
"""

from __future__ import annotations

from cloud_mock.video.fmp4_boxes import (
    DEPENDS_ON_NOTHING,
    DEPENDS_ON_SHIFT,
    H264_CODECS,
    HEVC_CODECS,
    SAMPLE_IS_NON_SYNC,
    Fmp4Error,
    Fragment,
    InitSegment,
    SampleDefaults,
    is_sync,
    iter_boxes,
    parse_fragment,
    parse_init,
    parse_moof,
    read_header,
    show_box,
)

# The box parsing lives in fmp4_boxes; its public names are this module's too, where the
# live hub and the tests import them.
__all__ = [
    "DEPENDS_ON_NOTHING",
    "DEPENDS_ON_SHIFT",
    "H264_CODECS",
    "HEVC_CODECS",
    "MAX_BOX",
    "MAX_CACHE",
    "SAMPLE_IS_NON_SYNC",
    "Fmp4Error",
    "Fragment",
    "InitSegment",
    "KeyframeCache",
    "SampleDefaults",
    "Splitter",
    "is_sync",
    "iter_boxes",
    "parse_fragment",
    "parse_init",
    "parse_moof",
]

MAX_BOX = 16 * 1024 * 1024
MAX_CACHE = 8 * 1024 * 1024

# Top-level boxes that may only start an init segment.
_INIT_BOXES = frozenset({"ftyp", "moov"})


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
        found = read_header(self._buf)
        if found is None:
            return None
        fourcc, header, size = found
        if size > self.max_box:
            raise Fmp4Error(
                f"box {show_box(fourcc)} claims {size} bytes, more than max_box={self.max_box}: "
                "the stream is corrupt, or max_box is too small for it"
            )
        if self._item_size(fourcc, size) > self.max_box:
            raise Fmp4Error(
                f"the {'init segment' if self._in_init else 'fragment'} being assembled "
                f"would exceed max_box={self.max_box} bytes with box {show_box(fourcc)} "
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
                f"the stream starts with box {show_box(fourcc)}, not ftyp: it is not fragmented "
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
