"""Attack 8 of issue 17 and issue 16's "never set aside state on a permission error".

Before: with a pre-existing world-writable state directory, a local user planted symbolic
links where camagent creates its files (`state.lock`, the key's temp file with a
predictable name), and a root `camagent reset` wrote through them into a root-owned file.
Now the directory is refused (owner and mode named), and files are never opened through
a link. Runs the real CLI as root (as the attack needs), and as `nobody` for the
permission case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.instance_lock import PID_FILE
from agent.token_store import KEY_FILE, STATE_FILE, DeviceRecord, TokenStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plays a root CLI and user nobody")

NOBODY = 65534
PID_WINDOW = 2000  # the attacker's guesses at the CLI's process ID
REPO = Path(__file__).parents[2]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Path]:
    """A directory every user may traverse (pytest's own tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="camagent-attack-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=False)


def write_config(base: Path, state: Path) -> Path:
    password = base / "password"
    password.write_text("label-password\n")
    password.chmod(0o644)
    config = base / "agent.toml"
    config.write_text(
        f'[device]\nid = "02:00:00:00:0a:01"\npassword_file = "{password}"\n\n'
        f'[cloud]\nurl = "https://127.0.0.1:1"\n\n'
        f'[paths]\nstate_dir = "{state}"\nrun_dir = "{base / "run"}"\n\n'
        "[local_api]\nenabled = false\n"
    )
    config.chmod(0o644)
    return config


def camagent(config: Path, *argv: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    python, path = sys.executable, [str(REPO)]
    if user is not None:
        # The venv's interpreter may live where another user cannot reach it (pyenv under
        # /root): run Debian's python3 on the venv's packages instead.
        python = "/usr/bin/python3"
        path += [p for p in sys.path if p.endswith("site-packages")]
    return subprocess.run(
        [python, "-m", "agent", "--config", str(config), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        user=user,
        cwd="/",
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
    )


def test_a_root_reset_never_writes_through_a_planted_link(world: Path) -> None:
    state = world / "state"
    state.mkdir()
    state.chmod(0o777)  # pre-existing and world-writable, as the attack found it
    victim = world / "root-owned-file"
    victim.write_bytes(b"precious root data\n")
    victim.chmod(0o644)
    before = victim.stat()
    # What a local user plants: the lock and the key, and the key's temp file under every
    # process ID the CLI may get.
    (state / "state.lock").symlink_to(world / "created-by-root")
    (state / KEY_FILE).symlink_to(world / "no-key-here")
    last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    for pid in range(last + 1, last + PID_WINDOW):
        (state / f".{KEY_FILE}.{pid}.tmp").symlink_to(victim)

    result = camagent(write_config(world, state), "reset")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"the state directory {state} is writable by group or others" in result.stderr
    assert "chmod 700" in result.stderr
    after = victim.stat()
    assert victim.read_bytes() == b"precious root data\n"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert not (world / "created-by-root").exists()
    assert not (world / "no-key-here").exists()


def test_a_state_directory_of_another_user_is_refused_by_name(world: Path) -> None:
    state = world / "state"
    state.mkdir(mode=0o700)  # root's
    config = write_config(world, state)
    result = camagent(config, "reset", user=NOBODY)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"the state directory {state} belongs to root, but camagent runs as" in result.stderr


def test_a_state_file_that_cannot_be_read_is_never_set_aside(world: Path) -> None:
    # The directory is the user's, the state file in it root's (0600): a permission
    # error, not damage. Before, `run` moved the state aside (and lost the token) or
    # died in set_aside with a PermissionError traceback.
    state = world / "state"
    state.mkdir(mode=0o700)
    TokenStore(state).save(DeviceRecord(device_id="02:00:00:00:0a:01", token="kept"))
    os.chown(state, NOBODY, NOBODY)
    os.chown(state / KEY_FILE, NOBODY, NOBODY)
    config = write_config(world, state)
    result = camagent(config, "run", user=NOBODY)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot read {state / STATE_FILE}" in result.stderr
    # Nothing moved aside; at most the daemon lock's pid file beside them.
    assert sorted(p.name for p in state.iterdir() if p.name != PID_FILE) == sorted(
        [KEY_FILE, STATE_FILE]
    )
    assert TokenStore(state).load().token == "kept"  # as root: untouched
