"""The person at the other end of `camagent cloud login`: output, line prompts, the
password prompt. Prompts read lines from stdin also when it is not a terminal, so a
script (or a test) can answer them; end of input is a clear error, never a hang."""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from agent.account.errors import CloudError


class Console(Protocol):
    def say(self, text: str) -> None: ...
    def ask(self, prompt: str) -> str: ...
    def ask_secret(self, prompt: str) -> str: ...


@dataclass
class StdConsole:
    """stdout for what we show, stdin for the answers; the password through getpass (no
    echo, from the controlling terminal) unless `password_stdin`."""

    password_stdin: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    inp: TextIO = field(default_factory=lambda: sys.stdin)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            raise CloudError(f"no answer to {prompt.strip()!r}: standard input ended")
        return line.rstrip("\r\n")

    def ask_secret(self, prompt: str) -> str:
        if self.password_stdin:
            line = self.inp.readline()
            if not line:
                raise CloudError("--password-stdin given but standard input is empty")
            return line.rstrip("\r\n")
        from agent import prompts

        try:
            return prompts.secret(prompt)
        except prompts.NoInput as exc:
            raise CloudError(str(exc)) from None


def printable(text: Any, limit: int = 40) -> str:
    """Text from the server made safe to print: no control characters (terminal escape
    sequences), at most `limit` characters."""
    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in str(text))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def clock(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def sessions_table(sessions: Sequence[dict[str, Any]], numbered: bool = False) -> str:
    """Device, software, started, last activity; numbered for a choice, or with `*` on
    the current session and the ids (for `sessions end ID`)."""
    headers = ["#" if numbered else "", "device", "software", "started", "last activity"]
    if not numbered:
        headers.append("id")
    rows = []
    for n, s in enumerate(sessions, 1):
        mark = str(n) if numbered else ("*" if s.get("current") else "")
        rows.append(
            [
                mark,
                printable(s.get("device", "?")),
                printable(s.get("software", "?")),
                clock(s.get("started")),
                clock(s.get("last_activity")),
                *([] if numbered else [printable(s.get("id", "?"), 64)]),
            ]
        )
    return table(headers, rows)
