"""`python -m cloud_mock`: run the mock cloud (docs/design.md §11)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from pathlib import Path

from cloud_mock import resources
from cloud_mock.accept import AcceptLimits
from cloud_mock.fixtures import FixtureError
from cloud_mock.keys import DEFAULT_CODE_TTL_S, DEFAULT_COMMAND_TIMEOUT_S, DEFAULT_HEARTBEAT_S
from cloud_mock.server import DEFAULT_PORT, Options, RunningMock, StartupError, run

ENV_HEARTBEAT = "CAMAGENT_MOCK_HEARTBEAT_S"
ENV_COMMAND_TIMEOUT = "CAMAGENT_MOCK_COMMAND_TIMEOUT_S"
ENV_CODE_TTL = "CAMAGENT_MOCK_CODE_TTL_S"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloud_mock",
        description="Mock cloud for camagent: provisioning service, VMS API, device channel.",
        epilog=f"Environment: {ENV_HEARTBEAT} (heartbeat told to devices, default "
        f"{DEFAULT_HEARTBEAT_S}), {ENV_COMMAND_TIMEOUT} (command wait, default "
        f"{DEFAULT_COMMAND_TIMEOUT_S:g}), {ENV_CODE_TTL} (NVR activation code lifetime, "
        f"default {DEFAULT_CODE_TTL_S:g}), CAMAGENT_MOCK_VIDEO_<SETTING> for each video "
        "setting of cloud_mock/video/settings.py (e.g. CAMAGENT_MOCK_VIDEO_LINGER_S, "
        "CAMAGENT_MOCK_VIDEO_THUMBNAIL_S).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port; 0 = the previous run's port if free, else any free port",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("cloud_mock_data"),
        help="state, keys and ready files (default ./cloud_mock_data)",
    )
    parser.add_argument("--fixtures", type=Path, help="JSON file with orgs, users, settings")
    parser.add_argument(
        "--packages",
        type=Path,
        metavar="DIR",
        help="serve camagent_*_all.deb / camagent-*.whl from DIR for /install.sh",
    )
    parser.add_argument(
        "--max-held-polls",
        type=int,
        default=resources.DEFAULT_MAX_HELD,
        metavar="N",
        help="long-polls held at once, in all (also kept below the open-file limit; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-held-per-client",
        type=int,
        default=resources.DEFAULT_MAX_HELD_PER_CLIENT,
        metavar="N",
        help="long-polls held at once from one client address (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections-per-client",
        type=int,
        default=AcceptLimits.per_client,
        metavar="N",
        help="connections open at once from one client address, an IPv4 address or an "
        "IPv6 /64 (default %(default)s)",
    )
    parser.add_argument(
        "--archive-max-mb",
        type=float,
        metavar="MB",
        help="the video archive's size cap, all cameras together; the oldest segments go "
        "first (default 2048)",
    )
    parser.add_argument(
        "--ffmpeg",
        metavar="PATH",
        help="the ffmpeg that pulls the cameras' video (default: ffmpeg on PATH)",
    )
    parser.add_argument(
        "--test-hooks",
        action="store_true",
        help="enable /v1/test/* (clock, provisioning log, faults)",
    )
    return parser


def _env_number(name: str, default: float, *, integer: bool) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise StartupError(f"{name}={raw!r} is not a {'whole ' if integer else ''}number") from None
    if value <= 0:
        raise StartupError(f"{name}={raw!r} must be greater than 0")
    return value


def _announce(mock: RunningMock) -> None:
    """What a person needs next, on stderr: stdout's one line is the URL, for scripts."""
    from agent import hints
    from cloud_mock.demo import browser_warning
    from cloud_mock.pki import CA_CERT
    from cloud_mock.users import ADMIN_LOGIN, ADMIN_PASSWORD_FILE

    password_file = mock.data_dir / ADMIN_PASSWORD_FILE
    print(
        f"Console:  {mock.url}/  (log in as {ADMIN_LOGIN!r}; the password is in "
        f"{password_file}: cat {password_file})\n"
        f"CA:       {mock.data_dir / CA_CERT} (give it to devices as cloud.ca_file, "
        f"and to `{hints.show('cloud servers add ca', ca=str(mock.data_dir / CA_CERT))}`)\n"
        f"Browser:  {browser_warning(mock.data_dir / CA_CERT)}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        _parser().error("--port must be from 0 to 65535")
    if args.max_held_polls < 1 or args.max_held_per_client < 1:
        _parser().error("--max-held-polls and --max-held-per-client must be at least 1")
    if args.max_connections_per_client < 1:
        _parser().error("--max-connections-per-client must be at least 1")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        options = Options(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            fixtures=args.fixtures,
            packages=args.packages,
            test_hooks=args.test_hooks,
            max_held_polls=args.max_held_polls,
            max_held_per_client=args.max_held_per_client,
            max_connections_per_client=args.max_connections_per_client,
            heartbeat_s=int(_env_number(ENV_HEARTBEAT, DEFAULT_HEARTBEAT_S, integer=True)),
            command_timeout_s=_env_number(
                ENV_COMMAND_TIMEOUT, DEFAULT_COMMAND_TIMEOUT_S, integer=False
            ),
            code_ttl_s=_env_number(ENV_CODE_TTL, DEFAULT_CODE_TTL_S, integer=False),
            archive_max_mb=args.archive_max_mb,
            ffmpeg=args.ffmpeg,
        )
        asyncio.run(run(options, announce=_announce))
    except (FixtureError, StartupError) as error:
        print(f"cloud_mock: error: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, sqlite3.DatabaseError) as error:
        # A damaged data directory (unreadable key, corrupt database, full disk): say
        # which, without a traceback; the log above has the details.
        print(f"cloud_mock: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
