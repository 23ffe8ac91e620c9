"""Reading a secret for a command (a token, a password, a session), the same way for every
command: README.md, "Secrets stay off command lines".

Every local user can read any process's command line (`ps`, /proc/PID/cmdline) and shells
keep it in their history, so a secret comes, in this order, from:

1. its file option (`--token-file FILE`, `--password-file FILE`, `--session-file FILE`;
   `-` is standard input, and on a terminal a prompt that does not echo);
2. its environment variable, where it has one (`CAMAGENT_TOKEN`, …): a process's
   environment is readable by its own user and root only (/proc/PID/environ is 0400);
3. standard input (a prompt on a terminal), for the commands that cannot do without the
   secret (`token set`, `qr make token`);

and, as before, from its command-line argument, which still works (scripts of earlier
releases use it) but prints a warning on stderr that says why it should not be used. A
secret left in the environment never changes what a command makes when the command could
do without it: optional secrets (the token or WiFi password of a card) have no variable.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.errors import CamagentError

MAX_SECRET_INPUT = 64 * 1024  # far above any secret: a wrong file is refused, not read whole
STDIN = "-"
TOKEN_ENV = "CAMAGENT_TOKEN"
# The help of a secret's command-line form, wherever it is still accepted.
DISCOURAGED = "discouraged: a command line is readable by every local user (a warning says so)"


class SecretInputError(CamagentError):
    """A secret that was asked for could not be read (or was given two ways at once)."""


@dataclass(frozen=True)
class Secret:
    """How one command takes one secret; the words are those of its messages."""

    what: str  # "token", "WiFi password", "session": in messages
    argument: str  # the command-line form: "TOKEN", "--token"
    file_option: str  # "--token-file"
    env: str | None = None  # the environment variable, if the secret has one
    instead: str = ""  # the warning's advice; default: the file option (and variable)
    password: bool = False  # keep the spaces: only the line ending is dropped
    program: str = "camagent"  # the name that starts the warning

    def advice(self) -> str:
        if self.instead:
            return self.instead
        env = f" or {self.env}=… in the environment" if self.env else ""
        return f"{self.file_option} FILE ('{STDIN}': standard input){env}"


def warn_command_line(spec: Secret) -> None:
    """The warning for a secret given on the command line, on stderr."""
    print(
        f"{spec.program}: warning: a {spec.what} on the command line is visible to every "
        f"local user (ps, /proc/PID/cmdline) and kept in shell history; use {spec.advice()}",
        file=sys.stderr,
    )


def is_stdin(file: str | Path | None) -> bool:
    return file is not None and str(file) == STDIN


def read_secret(
    spec: Secret,
    argument: str | None,
    file: str | Path | None,
    *,
    stdin: bool = False,
    prompt: str | None = None,
) -> str | None:
    """The secret, from `argument` (warned about), `file` (`-`: standard input), the
    environment, or (`stdin`) standard input; None when it was not given at all and the
    command can do without it. An empty or unreadable source is a SecretInputError."""
    if argument is not None and file is not None:
        raise SecretInputError(
            f"give the {spec.what} either as {spec.argument} or with {spec.file_option}, not both"
        )
    if argument is not None:
        if not argument.strip():
            if stdin:  # the command cannot do without it
                raise SecretInputError(f"no {spec.what} in {spec.argument}")
            return None
        warn_command_line(spec)
        return _clean(spec, argument, spec.argument)
    if file is not None and not is_stdin(file):
        return _clean(spec, _read_file(spec, Path(file)), str(file))
    if file is None and spec.env and os.environ.get(spec.env):
        return _clean(spec, os.environ[spec.env], f"the environment variable {spec.env}")
    if file is None and not stdin:
        return None
    return _clean(spec, _read_stdin(spec, prompt), "standard input")


def _read_file(spec: Secret, path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(MAX_SECRET_INPUT + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SecretInputError(f"cannot read the {spec.what} file {path}: {reason}") from None


def _read_stdin(spec: Secret, prompt: str | None) -> str:
    from agent.prompts import NoInput, interruptible, secret

    if sys.stdin is None:
        return ""
    if sys.stdin.isatty():  # typed or pasted, never shown: it is a credential
        what = spec.what[:1].upper() + spec.what[1:]
        try:
            return secret(prompt or f"{what} (it is not shown): ", spec.what)
        except NoInput:
            return ""
    with interruptible():
        return sys.stdin.read(MAX_SECRET_INPUT + 1)


def _clean(spec: Secret, text: str, source: str) -> str:
    if len(text) > MAX_SECRET_INPUT:
        raise SecretInputError(
            f"{source} holds more than {MAX_SECRET_INPUT} bytes: not a {spec.what}"
        )
    # A file written by an editor ends in a newline; a password keeps its other spaces.
    value = text.strip("\r\n") if spec.password else text.strip()
    if not value:
        where = f"standard input or with {spec.file_option} FILE"
        raise SecretInputError(f"no {spec.what} in {source}: give it on {where}")
    if spec.password and ("\n" in value or "\r" in value):
        raise SecretInputError(f"{source} holds more than one line: not a {spec.what}")
    return value
