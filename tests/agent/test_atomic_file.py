"""Crash-safe replacement (docs/design.md §7): temp file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from agent import atomic_file
from agent.atomic_file import fsync_dir, write_atomic
from agent.errors import StateError


def test_write_creates_the_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    old = os.umask(0)
    try:
        write_atomic(path, b"hello")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_with_another_mode(tmp_path: Path) -> None:
    path = tmp_path / "public.txt"
    write_atomic(path, b"x", mode=0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_replace_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_atomic(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a replaced file is private again


def test_the_file_is_replaced_not_rewritten(tmp_path: Path) -> None:
    """A reader holding the old file keeps the old bytes: the new ones are a new inode."""
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")
    with path.open("rb") as reader:
        write_atomic(path, b"new")
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new"


def test_a_failed_rename_keeps_the_old_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"previous")

    def no_space(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(StateError) as info:
        write_atomic(path, b"new bytes that do not fit")
    monkeypatch.undo()
    message = str(info.value)
    assert "no space left" in message
    assert "previous contents are kept" in message
    assert str(path) in message
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]  # temp file removed


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "no permission"),
        (errno.EPERM, "no permission"),
        (errno.EIO, os.strerror(errno.EIO)),
    ],
)
def test_failure_messages_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"previous")

    def fail(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(StateError) as info:
        write_atomic(path, b"new")
    monkeypatch.undo()
    assert words in str(info.value)
    assert "previous contents are kept" in str(info.value)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_a_missing_directory_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot save"):
        write_atomic(tmp_path / "missing" / "state.bin", b"x")


def test_the_directory_is_fsynced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_replace, real_fsync_dir = os.replace, atomic_file.fsync_dir

    def spy_replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    def spy_fsync_dir(directory: Path) -> None:
        calls.append(f"fsync_dir {directory}")
        real_fsync_dir(directory)

    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(atomic_file, "fsync_dir", spy_fsync_dir)
    write_atomic(tmp_path / "f", b"x")
    assert calls == ["replace", f"fsync_dir {tmp_path}"]


def test_fsync_dir_on_a_directory(tmp_path: Path) -> None:
    fsync_dir(tmp_path)  # no error on a real directory
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
