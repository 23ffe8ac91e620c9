"""Logging: the journal with fields under systemd, timestamped lines on a terminal."""

from __future__ import annotations

import logging
import os
import sys

# Structured fields passed with `extra=` (e.g. extra={"DEVICE_ID": ..., "STATE": ...})
# become journal fields under systemd.
JOURNAL_FIELDS = ("DEVICE_ID", "STATE")


class JournalPrefixFormatter(logging.Formatter):
    """stderr under systemd: `<N>` priority prefixes, no timestamps (journald adds them)."""

    PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self.PRIORITY.get(record.levelname, 6)}>"
        return prefix + super().format(record)


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


def _journal_handler() -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER="camagent")
    return handler


def setup(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if under_journal():
        journal = _journal_handler()
        if journal is not None:
            journal.setFormatter(logging.Formatter("%(message)s"))
            root.addHandler(journal)
            return
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(JournalPrefixFormatter("%(name)s: %(message)s"))
    else:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root.addHandler(stream)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
