"""Logging: the journal with fields under systemd, timestamped lines on a terminal.

Under systemd every record carries the journal fields DEVICE_ID and STATE (from
`set_context`), so `journalctl DEVICE_ID=aa:bb:… STATE=connected` finds them. The fields
go through systemd-python's JournalHandler when it is installed, else straight to
journald's native socket: the protocol is a datagram of KEY=value lines.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

ROOT_LOGGER = "agent"  # every module logs by __name__, so the whole agent is this tree
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "camagent"
PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

# Fields added to every record (journal fields under systemd); see set_context.
_context: dict[str, str] = {}


def set_context(**fields: str) -> None:
    """E.g. set_context(DEVICE_ID="aa:bb:…", STATE="connected")."""
    _context.update(fields)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RepeatFilter(logging.Filter):
    """Warnings and errors that repeat are let through once per `window_s`, with a count.

    A record is "the same" when its logger, level and message template (not its
    arguments) are: a poll failing with a new errno each time is still one line a minute.
    On a handler, so it holds for every logger, aiohttp's included: an attack that makes
    an error per connection fills the journal with one line a minute, not gigabytes.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
        level: int = logging.WARNING,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self.level = level
        # key -> (start of its window, records held back in it); bounded, oldest dropped
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        held = seen[1] if seen is not None else 0
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window_s:g} s)"
        return True


class JournalPrefixFormatter(logging.Formatter):
    """stderr under systemd: `<N>` priority prefixes, no timestamps (journald adds them)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITY.get(record.levelname, 6)}>" + super().format(record)


def _journal_field(key: str, value: str) -> bytes:
    if "\n" not in value:
        return f"{key}={value}\n".encode()
    data = value.encode()
    # Values with newlines use the binary form: KEY\n, 64-bit LE length, value, \n.
    return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


class NativeJournalHandler(logging.Handler):
    """journald's native protocol by hand, for images without systemd-python."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "MESSAGE": self.format(record),
                "PRIORITY": str(PRIORITY.get(record.levelname, 6)),
                "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
                "LOGGER": record.name,
                **{k: str(getattr(record, k)) for k in _context if hasattr(record, k)},
            }
            self.sock.sendto(b"".join(_journal_field(k, v) for k, v in fields.items()), self.path)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journal() -> bool:
    """systemd sets JOURNAL_STREAM to the device:inode of the stream it connected."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def journal_handler(use_libsystemd: bool = True) -> logging.Handler | None:
    if use_libsystemd:
        try:
            from systemd.journal import JournalHandler
        except ImportError:
            pass
        else:
            handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
            return handler
    if os.path.exists(JOURNAL_SOCKET):
        return NativeJournalHandler()
    return None


def setup(level: int = logging.INFO) -> None:
    """One handler on the root; the `agent` tree logs at `level`, other libraries' loggers
    at WARNING, and repeated warnings are held back (RepeatFilter)."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    logging.getLogger(ROOT_LOGGER).setLevel(level)
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler | None = journal_handler() if under_journal() else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(message)s"))
    elif under_journal():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalPrefixFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(ContextFilter())
    handler.addFilter(RepeatFilter())
    root.addHandler(handler)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
