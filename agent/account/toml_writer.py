"""The few TOML shapes servers.toml needs, written by hand: the standard library only
reads TOML (tomllib), and a dependency for this much would be out of proportion."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

Value = str | bool


def quote(text: str) -> str:
    """A TOML basic string: every character that needs it escaped, the rest kept as is."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def key(name: str) -> str:
    """A bare key when TOML allows one, a quoted key otherwise."""
    return name if _BARE_KEY.fullmatch(name) else quote(name)


def value(item: Value) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return quote(item)


def key_values(items: Mapping[str, Value]) -> list[str]:
    return [f"{key(name)} = {value(item)}" for name, item in items.items()]


def document(top: Mapping[str, Value], tables: Mapping[str, Sequence[Mapping[str, Value]]]) -> str:
    """Top-level keys, then each array of tables (`[[name]]`) in order."""
    lines = key_values(top)
    for name, entries in tables.items():
        for entry in entries:
            lines += ["", f"[[{key(name)}]]", *key_values(entry)]
    return "\n".join(lines) + "\n"
