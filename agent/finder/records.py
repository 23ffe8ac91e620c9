"""What a scan finds: one record per announced device, and how people and scripts see it.

Pure code: no sockets here, so the parsing of TXT data and the output are tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SERVICE_TYPE = "_camagent._tcp.local."
FP_SHORT = 16  # hex digits of the fingerprint shown in the table (64 bits)


@dataclass(frozen=True)
class DeviceRecord:
    """One `_camagent._tcp` service as resolved from mDNS."""

    instance: str  # the instance label, e.g. "camagent aa:bb:cc:dd:ee:ff"
    addresses: tuple[str, ...]
    port: int
    id: str = ""
    kind: str = ""
    state: str = ""
    ver: str = ""
    fp: str = ""
    pv: str = ""
    host: str = ""  # the SRV target, e.g. "camagent-aabbcc.local."
    txt: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.addresses[0] if self.addresses else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.instance,
            "kind": self.kind,
            "state": self.state,
            "ver": self.ver,
            "fp": self.fp,
            "pv": self.pv,
            "address": self.address,
            "addresses": list(self.addresses),
            "port": self.port,
            "host": self.host,
        }

    def matches(self, wanted: str) -> bool:
        """True when `wanted` names this device: its id or its instance name."""
        w = wanted.strip().lower()
        names = {self.id.lower(), self.instance.lower(), full_name(self.instance).lower()}
        return bool(w) and w in names


def instance_label(full: str) -> str:
    """`"x._camagent._tcp.local."` → `"x"` (other names come back unchanged)."""
    if full.endswith("." + SERVICE_TYPE):
        return full[: -len(SERVICE_TYPE) - 1]
    return full


def full_name(instance: str) -> str:
    return f"{instance}.{SERVICE_TYPE}"


def decode_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str]:
    """TXT keys are case-insensitive (RFC 6763 §6.4); a key without a value reads as ""."""
    decoded: dict[str, str] = {}
    for key, value in properties.items():
        name = key.decode("utf-8", "replace").lower()
        decoded[name] = "" if value is None else value.decode("utf-8", "replace")
    return decoded


def record_from_service(
    name: str,
    addresses: Iterable[str],
    port: int,
    properties: Mapping[bytes, bytes | None],
    host: str = "",
) -> DeviceRecord:
    txt = decode_txt(properties)
    return DeviceRecord(
        instance=instance_label(name),
        addresses=tuple(addresses),
        port=port,
        id=txt.get("id", ""),
        kind=txt.get("kind", ""),
        state=txt.get("state", ""),
        ver=txt.get("ver", ""),
        fp=txt.get("fp", "").lower(),
        pv=txt.get("pv", ""),
        host=host,
        txt=txt,
    )


def sort_records(records: Iterable[DeviceRecord]) -> list[DeviceRecord]:
    return sorted(records, key=lambda r: (r.id or r.instance, r.instance))


# -- output -------------------------------------------------------------------------------

COLUMNS = ("ID", "KIND", "STATE", "ADDRESS", "PORT", "FINGERPRINT")


def printable(text: str) -> str:
    """`text` from the LAN made safe for a terminal: control characters (escape sequences
    could rewrite the screen or the window title) become `?`."""
    return "".join(c if c.isprintable() else "?" for c in text)


def is_fingerprint(fp: str) -> bool:
    """A SHA-256 fingerprint as announced: 64 lower-case hex digits."""
    return re.fullmatch(r"[0-9a-f]{64}", fp) is not None


def format_table(records: Sequence[DeviceRecord], elapsed: float) -> str:
    if not records:
        return (
            f"No camagent device answered within {elapsed:.1f} s. Check that this computer "
            "is on the same network segment as the devices (mDNS does not cross routers), "
            "or try a longer --timeout."
        )
    rows = [
        tuple(
            printable(cell)
            for cell in (
                r.id or "?",
                r.kind or "?",
                r.state or "?",
                r.address or "?",
                str(r.port),
                (r.fp[:FP_SHORT] + "…") if len(r.fp) > FP_SHORT else (r.fp or "?"),
            )
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    noun = "device" if len(records) == 1 else "devices"
    lines.append(f"{len(records)} {noun} found in {elapsed:.1f} s.")
    return "\n".join(lines)
