"""Every command a person is told to run, built from the command line that told them.

A hint that drops `--config` or `--profile` acts on another device or account when run
as printed, and `camagent` alone is not found in a checkout where it is not on PATH. So
each hint is registered here once (HINTS, which tests/agent/test_hints.py walks) and
rendered for the invocation that prints it: the same program, the same `--config`, the
same `--profile`.

Scopes:
- "here": run where the hint was printed, by the same person: the invocation's program,
  config and profile.
- "device": run on the device itself (the console's and the finder's words about a
  camera), where the package installs `camagent` on PATH with its default config.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Scope = Literal["here", "device"]


@dataclass(frozen=True)
class Invocation:
    """What a person typed: the program, and the options a hint must repeat."""

    program: tuple[str, ...] = ("camagent",)
    config: str | None = None  # None: the default config (or $CAMAGENT_CONFIG, same shell)
    profile: str | None = None  # None: the default profile


@dataclass(frozen=True)
class Hint:
    words: tuple[str, ...]  # after the program; "{name}" filled in from the caller's values
    example: Mapping[str, str] = field(default_factory=dict)  # for tests: one set of values
    config: bool = False  # the command acts on this device: repeat --config
    profile: bool = False  # the command acts in the cloud: repeat --profile
    scope: Scope = "here"
    stdin: str = ""  # shown as `< FILE` after the command


def _hint(
    text: str,
    example: Mapping[str, str] | None = None,
    *,
    config: bool = False,
    profile: bool = False,
    scope: Scope = "here",
    stdin: str = "",
) -> Hint:
    return Hint(tuple(text.split()), dict(example or {}), config, profile, scope, stdin)


DEVICE = {"device": "02:bb:00:00:00:01"}

HINTS: dict[str, Hint] = {
    # The device's own commands, for the config the person used.
    "run": _hint("run", config=True),
    "status": _hint("status", config=True),
    "reset": _hint("reset", config=True),
    "poll-now": _hint("poll-now", config=True),
    "doctor": _hint("doctor", config=True),
    "token set": _hint("token set", config=True, stdin="FILE"),
    "nvr register": _hint("nvr register --token-file -", config=True),
    "demo": _hint("demo"),
    "qr make token": _hint("qr make token", stdin="FILE"),
    # The finder: the device named as the person named it.
    "finder scan": _hint("finder scan"),
    "finder reset": _hint("finder reset {device}", DEVICE),
    "finder poll-now": _hint("finder poll-now {device}", DEVICE),
    "finder push": _hint("finder push {device} --token-file FILE", DEVICE),
    # The cloud: the profile as the person chose it.
    "cloud login": _hint("cloud login --profile {profile}", {"profile": "my lab"}),
    "cloud sessions end": _hint("cloud sessions end ID", profile=True),
    "cloud servers add": _hint("cloud servers add NAME URL --login LOGIN"),
    "cloud servers add ca": _hint("cloud servers add NAME URL --ca-file {ca}", {"ca": "ca.pem"}),
    "cloud servers default": _hint("cloud servers default {name}", {"name": "lab"}),
    "cloud servers remove": _hint("cloud servers remove NAME"),
    # Words about a camera, run on it (the console, the finder's fingerprint check); the
    # console's `finder push` is run from a laptop that has the package.
    "device status": _hint("status", scope="device"),
    "device poll-now": _hint("poll-now", scope="device"),
    "device token set": _hint("token set", scope="device", stdin="token.txt"),
    "device nvr register": _hint("nvr register --token-file -", scope="device"),
    "device finder push": _hint("finder push DEVICE --token-file token.txt", scope="device"),
}


# -- the invocation ---------------------------------------------------------------------

_current: Invocation | None = None


def program() -> tuple[str, ...]:
    """How this camagent is run: `camagent` when that is on PATH and is this one; else
    its own path (e.g. .venv/bin/camagent in a checkout); else `python -m agent`."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    here = Path(argv0).resolve() if argv0 and argv0 != "-c" else None
    if here is not None and here.name == "__main__.py" and here.parent.name == "agent":
        return (sys.executable, "-m", "agent")
    if here is None or here.name != "camagent":
        # Used as a library (the demo, the mock, tests): the camagent of this Python.
        here = Path(sys.executable).with_name("camagent")
        if not here.exists():
            return (sys.executable, "-m", "agent")
    on_path = shutil.which("camagent")
    if on_path and Path(on_path).resolve() == here.resolve():
        return ("camagent",)
    if os.access(here, os.X_OK):
        return (str(here.resolve()),)
    return (sys.executable, "-m", "agent")


def use(invocation: Invocation | None) -> None:
    """The invocation every hint of this process is rendered for (set by cli.main)."""
    global _current
    _current = invocation


def current() -> Invocation:
    return _current if _current is not None else Invocation(program())


def invocation_of(config: str | Path | None, profile: str | None = None) -> Invocation:
    from agent.config import DEFAULT_CONFIG_PATH

    shown = None if config is None or Path(config) == Path(DEFAULT_CONFIG_PATH) else str(config)
    return Invocation(program(), shown, profile)


# -- rendering --------------------------------------------------------------------------


def argv(name: str, invocation: Invocation | None = None, /, **values: str) -> list[str]:
    """The hint's argument vector, for the invocation (default: this process's)."""
    hint = HINTS[name]
    inv = invocation or current()
    if hint.scope == "device":
        return ["camagent", *hint.words]
    words = [word.format(**values) if "{" in word else word for word in hint.words]
    configured = ["--config", inv.config] if hint.config and inv.config else []
    profiled = ["--profile", inv.profile] if hint.profile and inv.profile else []
    return [*inv.program, *configured, *words, *profiled]


def show(name: str, invocation: Invocation | None = None, /, **values: str) -> str:
    """The hint as a person types it (shell-quoted)."""
    text = shlex.join(argv(name, invocation, **values))
    stdin = HINTS[name].stdin
    return f"{text} < {stdin}" if stdin else text


# -- the daemon's words ----------------------------------------------------------------

# The daemon (agent/commands.py) and the offline path (agent/offline.py) know nothing of
# the command line: they name commands as "`camagent WORDS`" (and "start camagent"),
# which the CLI relaying their message renders for its invocation.
_QUOTED = re.compile(r"`camagent ([a-z][a-z -]*)`")
_START = re.compile(r"\bstart camagent\b")
_DAEMON_WORDS = {"reset": "reset", "poll-now": "poll-now", "run": "run", "status": "status"}
_FINDER_WORDS = {"reset": "finder reset", "poll-now": "finder poll-now"}


def relay(message: str, invocation: Invocation | None = None, device: str | None = None) -> str:
    """`message` from the daemon with its commands rendered for this invocation; with
    `device` (the finder), the device's own commands become the finder's for it."""
    table = _FINDER_WORDS if device is not None else _DAEMON_WORDS
    values = {"device": device} if device is not None else {}

    def render(match: re.Match[str]) -> str:
        name = table.get(match.group(1).strip())
        return f"`{show(name, invocation, **values)}`" if name else match.group(0)

    message = _QUOTED.sub(render, message)
    if device is None:
        message = _START.sub(lambda _: f"start `{show('run', invocation)}`", message)
    return message
