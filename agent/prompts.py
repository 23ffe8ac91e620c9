"""Asking a person for a secret on the terminal, the same way everywhere: end of input is
a clear error, and one Ctrl-C ends the command even inside an asyncio loop."""

from __future__ import annotations

import contextlib
import getpass
import signal
import threading
import warnings
from collections.abc import Iterator

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
    with interruptible(), warnings.catch_warnings():
        # Without a terminal getpass reads stdin and says so in one line of its own; its
        # Python warning (with a source path) would only add noise.
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except EOFError:
            raise NoInput(f"no {what} given: standard input ended") from None
