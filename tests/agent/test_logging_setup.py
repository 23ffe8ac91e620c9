"""Logging under systemd (priority prefixes, no timestamps) and on a terminal."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import logging_setup
from agent.logging_setup import JournalPrefixFormatter, under_journal


@pytest.fixture
def stderr_file(tmp_path: Path) -> Iterator[io.TextIOWrapper]:
    """A real file to stand for stderr; each test installs it (pytest's capture resets
    sys.stderr between the set-up and the call)."""
    with (tmp_path / "stderr.txt").open("w+") as stream:
        yield stream


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """setup() replaces the root handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    agent_level = logging.getLogger("agent").level
    yield root
    logging.getLogger("agent").setLevel(agent_level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def journal_stream_of(stream: io.TextIOWrapper) -> str:
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_under_journal_when_the_stream_matches(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stderr_file))
    assert under_journal() is True


def test_not_under_journal_when_stderr_was_redirected(
    stderr_file: io.TextIOWrapper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    # e.g. `camagent status 2>log` started from a unit: the variable is inherited, not true
    with (tmp_path / "other").open("w") as other:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(other))
        assert under_journal() is False
    st = os.fstat(stderr_file.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
    assert under_journal() is False
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev + 1}:{st.st_ino}")
    assert under_journal() is False


@pytest.mark.parametrize("value", [None, "", "garbage"])
def test_not_under_journal_without_the_variable(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    if value is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", value)
    assert under_journal() is False


def test_not_under_journal_when_stderr_has_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert under_journal() is False


def make_record(
    level: int, message: str = "poll %d: %s", args: tuple[object, ...] = (3, "no token yet")
) -> logging.LogRecord:
    return logging.LogRecord("camagent", level, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<2>"),
    ],
)
def test_journal_prefixes(level: int, prefix: str) -> None:
    line = JournalPrefixFormatter("%(name)s: %(message)s").format(make_record(level))
    assert line == f"{prefix}camagent: poll 3: no token yet"


def test_journal_lines_have_no_timestamp() -> None:
    line = JournalPrefixFormatter("%(name)s: %(message)s").format(make_record(logging.INFO))
    assert not re.search(r"\d{1,2}:\d{2}:\d{2}", line)
    assert not re.search(r"\d{4}-\d{2}-\d{2}", line)


def test_setup_under_journal_without_systemd_python_prefixes_stderr(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stderr_file))
    monkeypatch.setattr(logging_setup, "journal_handler", lambda: None)
    logging_setup.setup()
    logging.getLogger("agent.daemon").info("hello %s", "journal")
    logging.getLogger("agent.daemon").error("it broke")
    logging.getLogger("agent.daemon").debug("not shown at INFO")
    stderr_file.seek(0)
    assert stderr_file.read().splitlines() == [
        "<6>agent.daemon: hello journal",
        "<3>agent.daemon: it broke",
    ]


def test_setup_on_a_terminal_has_timestamps(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logging_setup.setup(logging.DEBUG)
    assert len(root_logger.handlers) == 1
    logging.getLogger("agent.daemon").debug("detail")
    stderr_file.seek(0)
    line = stderr_file.read().strip()
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2} DEBUG   agent.daemon: detail", line), line
    assert not line.startswith("<")
    assert logging.getLogger("aiohttp.access").level == logging.WARNING


def test_setup_under_journal_prefers_the_journal_handler(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stderr_file))
    records: list[str] = []

    class FakeJournal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    monkeypatch.setattr(logging_setup, "journal_handler", FakeJournal)
    logging_setup.setup()
    logging.getLogger("agent.daemon").warning("to the journal", extra={"DEVICE_ID": "aa"})
    assert records == ["to the journal"]  # journald keeps time and priority as fields
    stderr_file.seek(0)
    assert stderr_file.read() == ""


def _parse_native(datagram: bytes) -> dict[str, str]:
    """Decode journald's native protocol independently of the handler."""
    import struct

    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _sep, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size].decode()
            assert after[8 + size : 9 + size] == b"\n"
            rest = after[9 + size :]
    return fields


def test_native_journal_handler_sends_fields_with_context(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "journal.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    handler = logging_setup.NativeJournalHandler(str(path))
    handler.addFilter(logging_setup.ContextFilter())
    logger = logging.getLogger("camagent.test.native")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logging_setup.set_context(DEVICE_ID="aa:bb:cc:dd:ee:ff", STATE="connected")
        logger.warning("two\nlines")
        fields = _parse_native(receiver.recv(65536))
    finally:
        logger.removeHandler(handler)
        handler.close()
        receiver.close()
        logging_setup._context.clear()
    assert fields["MESSAGE"] == "two\nlines"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "camagent"
    assert fields["DEVICE_ID"] == "aa:bb:cc:dd:ee:ff"
    assert fields["STATE"] == "connected"


def test_context_fields_reach_every_record() -> None:
    logging_setup.set_context(DEVICE_ID="x1")
    try:
        record = logging.LogRecord("n", logging.INFO, __file__, 1, "m", None, None)
        assert logging_setup.ContextFilter().filter(record)
        assert record.DEVICE_ID == "x1"  # type: ignore[attr-defined]
    finally:
        logging_setup._context.clear()


def test_setup_logs_the_agent_tree_at_the_level_and_other_libraries_at_warning(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logging_setup.setup(logging.INFO)
    logging.getLogger("agent.provisioning.client").info("ours")
    logging.getLogger("aiohttp.client").info("theirs, chatty")
    logging.getLogger("aiohttp.client").warning("theirs, worth seeing")
    stderr_file.seek(0)
    text = stderr_file.read()
    assert "ours" in text
    assert "worth seeing" in text
    assert "chatty" not in text


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _through(flt: logging.Filter, level: int, msg: str, *args: object) -> str | None:
    record = logging.LogRecord("agent.x", level, __file__, 1, msg, args, None)
    return record.getMessage() if flt.filter(record) else None


def test_repeated_errors_pass_once_per_window_with_a_count() -> None:
    clock = _Clock()
    flt = logging_setup.RepeatFilter(window_s=60, clock=clock)
    assert _through(flt, logging.ERROR, "cannot save: %s", "EMFILE") == "cannot save: EMFILE"
    for second in range(1, 60):
        clock.now = second
        assert _through(flt, logging.ERROR, "cannot save: %s", f"errno {second}") is None
    clock.now = 60.0
    assert (
        _through(flt, logging.ERROR, "cannot save: %s", "EMFILE")
        == "cannot save: EMFILE (and 59 more like it in the last 60 s)"
    )
    clock.now = 61.0
    assert _through(flt, logging.ERROR, "cannot save: %s", "EMFILE") is None


def test_repeat_filter_lets_info_and_distinct_messages_through() -> None:
    flt = logging_setup.RepeatFilter(clock=_Clock())
    assert _through(flt, logging.INFO, "poll %d", 1) == "poll 1"
    assert _through(flt, logging.INFO, "poll %d", 2) == "poll 2"
    assert _through(flt, logging.WARNING, "one") == "one"
    assert _through(flt, logging.WARNING, "two") == "two"
    assert _through(flt, logging.ERROR, "one") == "one"  # another level: another line


def test_repeat_filter_table_is_bounded() -> None:
    flt = logging_setup.RepeatFilter(clock=_Clock(), max_keys=3)
    for n in range(10):
        assert _through(flt, logging.ERROR, f"distinct {n}") is not None
    assert len(flt._seen) == 3
    assert _through(flt, logging.ERROR, "distinct 0") == "distinct 0"  # evicted: shown again
