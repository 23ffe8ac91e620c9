"""The CLI talks to the running daemon over a Unix socket in run_dir (mode 0600).

One JSON request line, one JSON answer line: `{"cmd": ..., "args": {...}}` →
`{"ok": true, "data": ...}` or `{"ok": false, "error": "..."}`. The client side is plain
blocking `socket`, so a CLI call costs no event loop and no aiohttp import.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.errors import CamagentError, DaemonUnavailable

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def serve(path: Path, handler: Handler) -> asyncio.Server:
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left behind by a daemon that was killed
    except OSError as exc:
        raise CamagentError(
            f"cannot prepare the control socket {path}: {exc.strerror or exc} (check paths.run_dir)"
        ) from None

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await _answer(await reader.readline(), handler)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent an over-long line; nothing to answer
        finally:
            writer.close()

    # The umask makes the socket 0600 from the moment it exists: no window for others.
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path, limit=MAX_REQUEST)
    except OSError as exc:
        raise CamagentError(
            f"cannot listen on the control socket {path}: {exc.strerror or exc}"
        ) from None
    finally:
        os.umask(old_umask)
    return server


async def _answer(line: bytes, handler: Handler) -> dict[str, Any]:
    try:
        request = json.loads(line)
        cmd = request["cmd"]
        args = request.get("args") or {}
        if not isinstance(cmd, str) or not isinstance(args, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        return {"ok": False, "error": "malformed request"}
    try:
        return {"ok": True, "data": await handler(cmd, args)}
    except CamagentError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception:  # the daemon must outlive any one bad request
        log.exception("control request %r failed", cmd)
        return {"ok": False, "error": f"internal error while handling {cmd!r} (see the log)"}


def request(path: Path, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """Send one command to the daemon; raise DaemonUnavailable when none listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnavailable(
                f"no camagent daemon is running (no socket at {path})"
            ) from None
        except TimeoutError:
            raise DaemonUnavailable(f"the daemon did not accept a connection on {path}") from None
        except PermissionError:
            raise CamagentError(
                f"no permission to use {path}: run as root or the camagent user"
            ) from None
        except OSError as exc:  # e.g. "AF_UNIX path too long": no daemon can be there either
            raise DaemonUnavailable(f"cannot reach the daemon at {path}: {exc}") from None
        try:
            sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            raise CamagentError(f"the daemon did not answer {cmd!r} within {timeout:g} s") from None
        except OSError as exc:
            raise CamagentError(f"the daemon dropped the connection: {exc}") from None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise CamagentError("the daemon sent an unreadable answer") from None
    if not answer.get("ok"):
        raise CamagentError(answer.get("error") or "the daemon refused the command")
    return answer.get("data")


def inode(path: Path) -> int | None:
    """Which socket file this is: the owner removes it only while it is still its own."""
    try:
        return path.stat().st_ino
    except OSError:
        return None


def remove_if_owned(path: Path, owned: int | None) -> None:
    """Unlink the socket only if it is the one `owned` names: never another daemon's."""
    with contextlib.suppress(OSError):
        if owned is not None and path.stat().st_ino == owned:
            path.unlink()
