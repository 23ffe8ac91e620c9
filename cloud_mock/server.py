"""Start and stop the mock: data directory, TLS, socket, app runner, ready files.

`start()` is what both the command line and in-process tests use; it returns only when
the server is listening and `DATA_DIR/url` has been written (last, atomically).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from agent.atomic_file import write_atomic
from agent.local_api.listener import bind
from cloud_mock import log_limit, resources
from cloud_mock.accept import AcceptLimits, GuardedSite
from cloud_mock.app import make_app
from cloud_mock.clock import MockClock
from cloud_mock.fixtures import Fixtures, load_fixtures
from cloud_mock.keys import (
    CLOCK,
    DEFAULT_CODE_TTL_S,
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_HEARTBEAT_S,
    MockConfig,
)
from cloud_mock.pki import WILDCARD_HOSTS, ensure_pki
from cloud_mock.video.settings import VideoSettings

log = logging.getLogger(__name__)

URL_FILE = "url"
LOCK_FILE = ".lock"
DEFAULT_PORT = 8443
SHUTDOWN_TIMEOUT_S = 5.0
LISTEN_BACKLOG = 1024  # a burst of pollers waits here while the loop is busy
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'
# A client must finish its TLS handshake within this (asyncio's default is 60 s).
HANDSHAKE_TIMEOUT_S = 10.0
# A connection with no request in progress is closed after this: an idle keep-alive
# connection, one that never sends a request, and one that drips its headers (aiohttp's
# own default is about an hour). Longer than aiohttp's client keep-alive (15 s), so a
# client, not the mock, usually closes an idle connection first and no request races a
# close.
IDLE_TIMEOUT_S = 20.0


class StartupError(Exception):
    """The mock cannot start; the message says why."""


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path("cloud_mock_data")
    fixtures: Path | None = None
    test_hooks: bool = False
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    code_ttl_s: float = DEFAULT_CODE_TTL_S
    packages: Path | None = None  # served at /packages/, pointed to by /install.sh
    max_held_polls: int = resources.DEFAULT_MAX_HELD
    max_held_per_client: int = resources.DEFAULT_MAX_HELD_PER_CLIENT
    idle_timeout_s: float = IDLE_TIMEOUT_S
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    max_connections_per_client: int = AcceptLimits.per_client
    archive_max_mb: float | None = None  # None: CAMAGENT_MOCK_VIDEO_ARCHIVE_MAX_MB or 2048
    ffmpeg: str | None = None  # None: CAMAGENT_MOCK_VIDEO_FFMPEG or `ffmpeg` from PATH


@dataclass
class RunningMock:
    url: str
    data_dir: Path
    app: web.Application
    runner: web.AppRunner
    lock_fd: int
    stopped: bool = False

    @property
    def clock(self) -> MockClock:
        return self.app[CLOCK]

    async def stop(self) -> None:
        """Shut down (held polls answer 204, channels close 1001); idempotent."""
        if self.stopped:
            return
        self.stopped = True
        try:
            await self.runner.cleanup()
        finally:
            os.close(self.lock_fd)


def url_for(host: str, port: int) -> str:
    """The https origin clients use; a wildcard bind is reached through loopback."""
    if host in WILDCARD_HOSTS:
        host = "::1" if host == "::" else "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"https://{host}:{port}"


def _previous_port(data_dir: Path) -> int | None:
    try:
        return urlsplit((data_dir / URL_FILE).read_text().strip()).port
    except (OSError, ValueError):
        return None


def _listen(options: Options, data_dir: Path) -> socket.socket:
    """Bind --port; with 0, prefer the port of the previous run so old tokens stay valid."""
    previous = _previous_port(data_dir) if options.port == 0 else None
    if previous:
        try:
            return bind(options.host, previous, LISTEN_BACKLOG)
        except OSError:
            log.info("port %d of the previous run is taken; picking a free one", previous)
    try:
        return bind(options.host, options.port, LISTEN_BACKLOG)
    except OSError as error:
        raise StartupError(
            f"cannot listen on {options.host} port {options.port}: {error.strerror or error}"
        ) from None


def _lock(data_dir: Path) -> int:
    """One mock per data directory: two would share the database but not their waiters."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(
            f"another cloud_mock is already running with data directory {data_dir}"
        ) from None
    return fd


def _prepare_data_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(f"cannot create data directory {path}: {error.strerror}") from None
    return path.resolve()


async def start(options: Options) -> RunningMock:
    # Fixtures first: a bad file must stop us before anything changes.
    fixtures = load_fixtures(options.fixtures) if options.fixtures is not None else None
    if options.packages is not None and not options.packages.is_dir():
        raise StartupError(f"--packages {options.packages}: not a directory")
    data_dir = _prepare_data_dir(options.data_dir)
    lock_fd = _lock(data_dir)
    try:
        return await _start_locked(options, data_dir, fixtures, lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


async def _start_locked(
    options: Options, data_dir: Path, fixtures: Fixtures | None, lock_fd: int
) -> RunningMock:
    descriptors = resources.raise_file_limit()
    resources.shrink_tls_read_buffer()
    log_limit.install()
    sock = _listen(options, data_dir)
    with _stale_file_removed(data_dir / URL_FILE):
        try:
            pki = ensure_pki(data_dir, options.host)
            url = url_for(options.host, sock.getsockname()[1])
            config = MockConfig(
                data_dir=data_dir,
                url=url,
                signing_key=pki.signing_key,
                test_hooks=options.test_hooks,
                heartbeat_s=options.heartbeat_s,
                command_timeout_s=options.command_timeout_s,
                code_ttl_s=options.code_ttl_s,
                fixtures=fixtures,
                packages_dir=options.packages.resolve() if options.packages else None,
                held_polls=resources.HeldPollLimits.for_descriptors(
                    descriptors, options.max_held_polls, options.max_held_per_client
                ),
                video=_video_settings(options),
            )
            app = make_app(config)
            # handler_cancellation: a device that gives up on a held long-poll must free
            # its handler (and the TLS buffers behind it) now, not when the wait runs out.
            runner = web.AppRunner(
                app,
                access_log_format=ACCESS_LOG_FORMAT,
                shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                handler_cancellation=True,
                keepalive_timeout=options.idle_timeout_s,
            )
            await runner.setup()
        except BaseException:
            sock.close()
            raise
        try:
            site = GuardedSite(runner, sock, ssl_context=pki.ssl_context())
            site.limits = AcceptLimits(
                per_client=options.max_connections_per_client,
                handshake_s=options.handshake_timeout_s,
            )
            await site.start()
            write_atomic(data_dir / URL_FILE, (url + "\n").encode(), 0o644)
        except BaseException:
            await runner.cleanup()
            raise
    log.info(
        "cloud_mock listening on %s (data in %s%s)",
        url,
        data_dir,
        ", test hooks on" if options.test_hooks else "",
    )
    return RunningMock(url=url, data_dir=data_dir, app=app, runner=runner, lock_fd=lock_fd)


@contextlib.contextmanager
def _stale_file_removed(path: Path) -> Iterator[None]:
    """Remove an earlier run's `url` (it would tell a watcher we are ready) for the body.

    The old file stays open meanwhile, so its inode cannot be recycled for the new
    file: watchers that wait for "a different inode" see the new one, never the old.
    """
    try:
        fd: int | None = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    try:
        path.unlink(missing_ok=True)
        yield
    finally:
        if fd is not None:
            os.close(fd)


async def run(options: Options, announce: Callable[[RunningMock], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly; `announce` is told once up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    mock = await start(options)
    try:
        print(mock.url, flush=True)
        if announce is not None:
            announce(mock)
        await stop.wait()
        log.info("shutting down")
    finally:
        await mock.stop()
        sys.stdout.flush()


def _video_settings(options: Options) -> VideoSettings:
    """The environment's video settings, then the command line's; StartupError if bad."""
    try:
        return VideoSettings.from_env(archive_max_mb=options.archive_max_mb, ffmpeg=options.ffmpeg)
    except ValueError as error:
        raise StartupError(str(error)) from None
