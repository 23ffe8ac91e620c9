"""Asking a person for a secret or a yes/no on the terminal, the same way everywhere: end
of input is a clear error, and one Ctrl-C ends the command even inside an asyncio loop."""

from __future__ import annotations

import contextlib
import getpass
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TextIO

from agent.errors import CamagentError


class NoInput(CamagentError):
    """Standard input ended (closed, /dev/null, or Ctrl-D) where an answer was needed."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While blocked in a prompt, Ctrl-C raises KeyboardInterrupt at once.

    asyncio.run installs its own SIGINT handler, which only cancels the main task: a read
    blocked in the loop's thread is restarted after the signal, so a first Ctrl-C would
    seem to do nothing until the prompt returned.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def secret(prompt: str, what: str = "password") -> str:
    stdin = sys.stdin
    if stdin is None or not _is_terminal(stdin):
        # No terminal to turn echo off on: read one line of the pipe or file ourselves
        # (getpass would print its own "Password input may be echoed" warning first).
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(prompt)
            sys.stderr.flush()
        with interruptible():
            line = stdin.readline() if stdin is not None else ""
        if not line:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.write("\n")  # the error that follows gets a line of its own
            raise NoInput(f"no {what} given: standard input ended (it is not a terminal)")
        return line.rstrip("\r\n")
    with interruptible(), warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except EOFError:
            raise NoInput(f"no {what} given: standard input ended") from None


def confirm(question: str) -> bool | None:
    """Ask `question` (ending in "[y/N] ") on the terminal: True for y/yes, False for
    anything else or end of input; None when there is no terminal to ask on (a script
    must then say what it wants with an option, not by what happens to be on stdin)."""
    stdin = sys.stdin
    if stdin is None or not _is_terminal(stdin):
        return None
    sys.stderr.write(question)
    sys.stderr.flush()
    with interruptible():
        line = stdin.readline()
    if not line:
        sys.stderr.write("\n")
        return False
    return line.strip().lower() in ("y", "yes")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
