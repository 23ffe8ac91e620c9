"""The encrypted device state (docs/design.md §7): AES-GCM at rest, mode 0600, lost writes never."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.errors import StateError
from agent.token_store import (
    KEY_FILE,
    MAGIC,
    STATE_FILE,
    DamagedState,
    DeviceRecord,
    PasswordStamp,
    TokenStore,
)
from tests.agent.tokens import verified

TOKEN = "eyJ2IjoxLCJzdWIiOiJhYSJ9.c2lnbmF0dXJlLXNlY3JldA"


def held(record: DeviceRecord, token: str) -> DeviceRecord:
    # The store keeps whatever text it is given: these tests are about the file, not the
    # gate (`with_token` takes only a VerifiedToken).
    return replace(record, token=token, token_source="test")


@pytest.fixture(autouse=True)
def _no_systemd_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def record(**changes: object) -> DeviceRecord:
    base = DeviceRecord(
        device_id="aa:bb:cc:dd:ee:ff",
        key="a2V5LWJ5dGVz",
        key_stamp=PasswordStamp("/etc/camagent/password", 9, 123456789, 42),
        token=TOKEN,
        token_source="poll",
        token_saved_at=1_700_000_000.5,
        trusted_keys_pem=("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_load_without_a_state_file_is_an_empty_record(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state")
    assert not store.exists()
    assert store.load() == DeviceRecord()
    assert not store.load().has_token


def test_save_load_round_trip(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state")
    store.save(record())
    assert store.exists()
    assert TokenStore(tmp_path / "state").load() == record()  # a fresh store, same key file


def test_state_directory_is_private(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "a" / "b")
    store.save(record())
    assert mode(tmp_path / "a" / "b") == 0o700


def test_state_file_and_key_are_0600_and_the_key_is_32_bytes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = TokenStore(tmp_path)
        store.save(record())
    finally:
        os.umask(old)
    assert mode(tmp_path / STATE_FILE) == 0o600
    assert mode(tmp_path / KEY_FILE) == 0o600
    assert len((tmp_path / KEY_FILE).read_bytes()) == 32


def test_the_state_is_aes_gcm_under_the_key_file(tmp_path: Path) -> None:
    """Open state.bin here with the key file and AESGCM, as the module documents it."""
    store = TokenStore(tmp_path)
    store.save(record())
    blob = (tmp_path / STATE_FILE).read_bytes()
    key = (tmp_path / KEY_FILE).read_bytes()
    assert blob.startswith(MAGIC)
    body = blob[len(MAGIC) :]
    plain = AESGCM(key).decrypt(body[:12], body[12:], MAGIC)
    data = json.loads(plain)
    assert data["token"] == TOKEN
    assert data["device_id"] == "aa:bb:cc:dd:ee:ff"


def test_the_token_is_not_on_disk_in_clear(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(record())
    for path in tmp_path.iterdir():
        content = path.read_bytes()
        assert TOKEN.encode() not in content
        assert b"signature" not in content
        assert b"aa:bb:cc:dd:ee:ff" not in content


def test_each_save_uses_a_fresh_nonce(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(record())
    first = (tmp_path / STATE_FILE).read_bytes()
    store.save(record())
    assert (tmp_path / STATE_FILE).read_bytes() != first


@pytest.mark.parametrize("position", [0, len(MAGIC) + 3, len(MAGIC) + 20, -1])
def test_a_tampered_byte_is_a_state_error(tmp_path: Path, position: int) -> None:
    store = TokenStore(tmp_path)
    store.save(record())
    path = tmp_path / STATE_FILE
    blob = bytearray(path.read_bytes())
    blob[position] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(StateError) as info:
        TokenStore(tmp_path).load()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"hello", MAGIC, MAGIC + b"x" * 20])
def test_garbage_is_not_a_state_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(StateError, match="not a camagent state file"):
        TokenStore(tmp_path).load()


def test_a_state_written_with_another_key_names_the_key(tmp_path: Path) -> None:
    TokenStore(tmp_path).save(record())
    (tmp_path / KEY_FILE).write_bytes(os.urandom(32))
    with pytest.raises(StateError, match="written with another key or damaged") as info:
        TokenStore(tmp_path).load()
    assert str(tmp_path / KEY_FILE) in str(info.value)


def test_a_key_of_the_wrong_length(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(StateError, match="must be 32 bytes, it has 5"):
        TokenStore(tmp_path).save(record())


def test_an_unexpected_record_is_a_state_error(tmp_path: Path) -> None:
    key = os.urandom(32)
    (tmp_path / KEY_FILE).write_bytes(key)
    nonce = os.urandom(12)
    plain = json.dumps({"format": 99}).encode()
    (tmp_path / STATE_FILE).write_bytes(MAGIC + nonce + AESGCM(key).encrypt(nonce, plain, MAGIC))
    with pytest.raises(StateError, match="unexpected record"):
        TokenStore(tmp_path).load()


def test_systemd_credential_is_the_state_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    cred_key = os.urandom(32)
    (creds / "state-key").write_bytes(cred_key)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    state = tmp_path / "state"
    TokenStore(state).save(record())
    assert not (state / KEY_FILE).exists()  # no key file beside the state
    blob = (state / STATE_FILE).read_bytes()[len(MAGIC) :]
    assert json.loads(AESGCM(cred_key).decrypt(blob[:12], blob[12:], MAGIC))["token"] == TOKEN
    assert TokenStore(state).load() == record()
    # Without the credential the state cannot be opened, and the error says which key it tried.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(StateError, match="another key") as info:
        TokenStore(state).load()
    assert str(state / KEY_FILE) in str(info.value)


def test_wrong_credential_names_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "state-key").write_bytes(os.urandom(32))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    TokenStore(tmp_path / "state").save(record())
    (creds / "state-key").write_bytes(os.urandom(32))
    with pytest.raises(StateError, match="systemd credential") as info:
        TokenStore(tmp_path / "state").load()
    assert str(creds / "state-key") in str(info.value)


def test_an_empty_credentials_directory_falls_back_to_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "creds").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    TokenStore(tmp_path / "state").save(record())
    assert len((tmp_path / "state" / KEY_FILE).read_bytes()) == 32


def test_update_reads_changes_and_saves(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(record())
    result = store.update(lambda r: r.without_token())
    assert not result.has_token
    assert TokenStore(tmp_path).load() == record().without_token()
    assert (tmp_path / "state.lock").exists()


def test_update_that_raises_keeps_the_old_state(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(record())

    def boom(r: DeviceRecord) -> DeviceRecord:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update(boom)
    assert TokenStore(tmp_path).load() == record()


def test_record_helpers() -> None:
    token = verified("cli")
    r = DeviceRecord(device_id="x", activation={"code": "spent"}).with_token(token)
    assert (r.token, r.token_source, r.has_token) == (token.raw, "cli", True)
    assert r.token_saved_at > 0
    assert r.activation is None  # a new token spends the activation code
    cleared = r.without_token()
    assert (cleared.token, cleared.token_source, cleared.token_saved_at) == ("", "", 0.0)
    assert cleared.device_id == "x"
    assert DeviceRecord(key="AAEC").provisioning_key() == b"\x00\x01\x02"
    assert DeviceRecord().provisioning_key() is None


def test_password_stamp_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("secret")
    stamp = PasswordStamp.of(path)
    st = path.stat()
    assert stamp == PasswordStamp(str(path), 6, st.st_mtime_ns, st.st_ino)


def test_set_aside_moves_a_damaged_file(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(record())
    store.path.write_bytes(store.path.read_bytes()[:-1] + b"!")  # the tag no longer matches
    content = store.path.read_bytes()
    with pytest.raises(DamagedState):
        store.load()
    aside = store.set_aside()
    assert not store.path.exists()
    assert aside.parent == tmp_path
    assert aside.name.startswith(STATE_FILE + ".unreadable-")
    assert aside.read_bytes() == content
    assert store.load() == DeviceRecord()


def test_a_state_that_cannot_be_read_is_never_set_aside(tmp_path: Path) -> None:
    # Issue 16: a plain read error (here EISDIR; EACCES and EROFS alike) is not damage.
    store = TokenStore(tmp_path)
    store.path.mkdir()
    with pytest.raises(StateError) as caught:
        store.load()
    assert not isinstance(caught.value, DamagedState)
    with pytest.raises(StateError, match="not damaged, so it was not moved aside"):
        store.set_aside()
    assert store.path.is_dir()  # still where it was


def test_an_unreadable_state_key_is_not_damage(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(record())
    (tmp_path / KEY_FILE).unlink()
    (tmp_path / KEY_FILE).mkdir()  # cannot be read, like a key without permission
    with pytest.raises(StateError) as caught:
        TokenStore(tmp_path).load()
    assert not isinstance(caught.value, DamagedState)
    assert "cannot read the state key" in str(caught.value)


def test_symbolic_links_in_the_state_directory_are_never_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"k" * 32)  # 32 bytes: would pass for a key if it were read
    (state / KEY_FILE).symlink_to(target)
    (state / "state.lock").symlink_to(tmp_path / "created-through-the-link")
    store = TokenStore(state)
    with pytest.raises(StateError, match="symbolic link"):
        store.update(lambda r: held(r, "t"))
    assert target.read_bytes() == b"k" * 32
    assert not (tmp_path / "created-through-the-link").exists()
    (state / "state.lock").unlink()
    with pytest.raises(StateError, match="symbolic link"):
        store.update(lambda r: held(r, "t"))  # the key link itself
    (state / KEY_FILE).unlink()
    (state / KEY_FILE).symlink_to(tmp_path / "missing")  # dangling: no endless retry
    with pytest.raises(StateError, match="symbolic link"):
        store.update(lambda r: held(r, "t"))
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722, 0o1777])
def test_a_state_directory_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(StateError, match=r"writable by group or others .*chmod 700"):
        TokenStore(state).update(lambda r: held(r, "t"))
    assert list(state.iterdir()) == []  # nothing was made in it
    with pytest.raises(StateError, match="writable by group or others"):
        TokenStore(state).load()


@pytest.mark.skipif(os.geteuid() != 0, reason="root writing for the service's user")
def test_files_root_makes_in_the_service_users_directory_go_to_that_user(
    tmp_path: Path,
) -> None:
    # `sudo camagent reset` on /var/lib/camagent (User=camagent): the daemon must still be
    # able to read what root wrote.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    TokenStore(state).update(lambda r: held(r, TOKEN))
    owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in state.iterdir()}
    assert owners == {name: (65534, 65534) for name in (STATE_FILE, KEY_FILE, "state.lock")}


def test_a_new_state_directory_is_made_0700(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "new" / "state")
    store.save(record())
    assert (tmp_path / "new" / "state").stat().st_mode & 0o777 == 0o700


# -- concurrent writers ------------------------------------------------------------------


def _increment_many(state_dir: str, times: int) -> None:
    store = TokenStore(Path(state_dir))
    for _ in range(times):
        store.update(lambda r: replace(r, token=str(int(r.token or "0") + 1)))


def test_concurrent_updates_lose_no_write(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_increment_many, args=(str(tmp_path), 25)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert TokenStore(tmp_path).load().token == "100"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_temp_files_of_killed_writes_are_removed_by_the_next_update(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.update(lambda r: held(r, "first"))
    stale = [tmp_path / f".state.bin.killed{i}.tmp" for i in range(3)]
    for path in stale:
        path.write_bytes(b"half a write")
    other = tmp_path / ".local-api-lockout.json.x.tmp"  # not state.bin's: left alone
    other.write_bytes(b"")
    record = store.update(lambda r: held(r, "second"))
    assert record.token == "second"
    assert not any(path.exists() for path in stale)
    assert other.exists()
    assert store.load().token == "second"
