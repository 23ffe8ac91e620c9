"""What an RTSP `DESCRIBE` answer's SDP says about its video (design §12.4).

`parse_sdp` finds the first `m=video` media and tells its payload type, codec and, when
the SDP says it, the picture size: from `a=framesize`, `a=x-dimensions`, `a=cliprect`,
or the H.264 SPS in `sprop-parameter-sets`, read bit by bit as far as the size. Pure: no
I/O; a damaged SPS gives no size rather than an error. `rtsp_probe` is its one user.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

# RFC 3551's static video payload types, for an SDP that gives no a=rtpmap.
_STATIC_VIDEO = {"26": "JPEG", "31": "H261", "32": "MPV", "33": "MP2T", "34": "H263"}


@dataclass(frozen=True)
class SdpVideo:
    """The first video media of an SDP: its first payload type, codec and size."""

    payload: str
    codec: str | None
    size: tuple[int, int] | None


def parse_sdp(sdp: str) -> SdpVideo | None:
    """The first `m=video` media of `sdp`, or None when there is none."""
    media = _first_video_media(sdp.splitlines())
    if media is None:
        return None
    fields = media[0].split()
    payload = fields[3] if len(fields) > 3 else ""
    attributes = [line[2:].strip() for line in media[1:] if line.startswith("a=")]
    codec = _STATIC_VIDEO.get(payload)
    for attribute in attributes:
        match = re.fullmatch(r"rtpmap:(\S+)\s+([^/\s]+)/.*", attribute)
        if match and match.group(1) == payload:
            codec = match.group(2).upper()
            break
    return SdpVideo(payload, codec, _size(payload, codec, attributes))


def _first_video_media(lines: list[str]) -> list[str] | None:
    lines = [line.strip() for line in lines]
    start = next((i for i, line in enumerate(lines) if line.startswith("m=video ")), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return lines[start:end]


def _size(payload: str, codec: str | None, attributes: list[str]) -> tuple[int, int] | None:
    """The picture size the SDP tells, if any: a=framesize, a=x-dimensions, a=cliprect,
    or the H.264 SPS in sprop-parameter-sets."""
    patterns = (
        (rf"framesize:{re.escape(payload)}\s+(\d+)-(\d+)", False),
        (r"x-dimensions:\s*(\d+)\s*,\s*(\d+)", False),
        (r"cliprect:\s*\d+\s*,\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)", True),  # top,left,bottom,right
    )
    for attribute in attributes:
        for pattern, height_first in patterns:
            if match := re.fullmatch(pattern, attribute):
                first, second = int(match.group(1)), int(match.group(2))
                return (second, first) if height_first else (first, second)
    if codec == "H264":
        for attribute in attributes:
            sets = re.search(r"sprop-parameter-sets=([A-Za-z0-9+/=,]+)", attribute)
            if attribute.startswith(f"fmtp:{payload} ") and sets:
                return _h264_sps_size(sets.group(1))
    return None


def _h264_sps_size(sprop: str) -> tuple[int, int] | None:
    """Width and height from the SPS among `sprop` (base64 NAL units, comma-separated)."""
    for unit in sprop.split(","):
        try:
            nal = base64.b64decode(unit, validate=True)
        except ValueError:
            continue
        if nal and nal[0] & 0x1F == 7:
            try:
                return _sps_size(_Bits(_unescape(nal[1:])))
            except _OutOfBits:
                return None
    return None


def _unescape(data: bytes) -> bytes:
    """The RBSP of a NAL unit: without the emulation-prevention 0x03 after two zeros."""
    return re.sub(rb"\x00\x00\x03", b"\x00\x00", data)


class _OutOfBits(Exception):
    """The SPS ended early: a damaged or truncated one."""


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def u(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte, bit = divmod(self.position, 8)
            if byte >= len(self.data):
                raise _OutOfBits
            value = value << 1 | (self.data[byte] >> (7 - bit)) & 1
            self.position += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise _OutOfBits
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value % 2 else -(value // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _sps_size(bits: _Bits) -> tuple[int, int]:
    """H.264 §7.3.2.1.1, read as far as the picture size and its cropping."""
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format, separate_planes = 1, 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    _skip_pic_order_count(bits)
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        if chroma_format == 0 or separate_planes:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            unit_x = 2 if chroma_format in (1, 2) else 1
            unit_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last, next_ = 8, 8
    for _ in range(size):
        if next_ != 0:
            next_ = (last + bits.se() + 256) % 256
        last = next_ or last


def _skip_pic_order_count(bits: _Bits) -> None:
    kind = bits.ue()
    if kind == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif kind == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):  # offset_for_ref_frame[]
            bits.se()
