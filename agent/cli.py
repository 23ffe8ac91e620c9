"""`camagent [--config PATH] COMMAND` (docs/design.md §10). Exit codes: 0 ok, 1 failure, 2 usage.

The parser is agent/cli_parser.py, the handlers agent/cli_commands.py, the human output
agent/cli_output.py; here: one entry point that turns every failure into one line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence

from agent import config as config_mod
from agent import hints
from agent.cli_commands import COMMANDS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from agent.cli_output import _format_local_api, format_status
from agent.cli_parser import EXAMPLES, build_parser, walk_commands
from agent.errors import CamagentError

__all__ = [
    "COMMANDS",
    "EXAMPLES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "_format_local_api",
    "build_parser",
    "format_status",
    "main",
    "walk_commands",
]


def main(argv: Sequence[str] | None = None) -> int:
    verbose = False
    stdout_closed = sys.stdout is None  # `camagent status >&-`: Python gives us None
    if stdout_closed:
        import os

        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.config = getattr(args, "config", None)
        verbose = args.verbose = bool(getattr(args, "verbose", False))
        # Every hint this command prints repeats how it was run (agent/hints.py).
        hints.use(
            hints.invocation_of(
                config_mod.resolve_path(args.config), getattr(args, "profile", None)
            )
        )
        handler: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        # Output that had nowhere to go ends quietly, with a broken pipe's exit code.
        return code or (EXIT_FAILURE if stdout_closed else EXIT_OK)
    except CamagentError as exc:
        # The daemon's and the offline path's words name commands plainly: rendered
        # here for this command line.
        return _fail(hints.relay(str(exc)))
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            print(file=sys.stderr)  # a prompt's line, if any, ends before the shell's
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`camagent status | head -2`): stop quietly, as Unix tools
        # do, and keep Python from complaining while it flushes stdout at exit.
        _silence_stdout()
        return EXIT_FAILURE
    except PermissionError as exc:
        from agent.file_access import permission_message

        return _fail(permission_message(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except Exception as exc:
        # A bug: one line for people, the whole traceback with -v for the report.
        if verbose:
            import traceback

            traceback.print_exc()
        return _fail(
            f"unexpected error ({type(exc).__name__}: {exc}); run with -v for details "
            "and please report it"
        )


def _fail(message: str) -> int:
    with contextlib.suppress(OSError):  # stderr itself gone: the exit code still says it
        print(f"camagent: {_terminal_safe(message)}", file=sys.stderr)
    return EXIT_FAILURE


def _silence_stdout() -> None:
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _terminal_safe(text: str) -> str:
    # Messages may quote what a device or a cloud said: no escape sequence reaches the
    # terminal from there.
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)
