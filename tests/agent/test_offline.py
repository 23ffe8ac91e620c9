"""What the CLI does to the state when no daemon runs (docs/design.md §10)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import __version__, offline
from agent.config import Config, load
from agent.errors import CamagentError, ConfigError, TokenError
from agent.token_codec import sign_token
from agent.token_store import STATE_FILE, DeviceRecord, PasswordStamp, TokenStore
from agent.trust import PLAIN_REFUSED
from tests.agent.tokens import LABEL_PASSWORD, label_key, sealed

DEVICE = "aa:bb:cc:dd:ee:ff"
CLOUD = "https://cloud.test:8443"


def claims(**changes: Any) -> dict[str, Any]:
    data = {
        "v": 1,
        "sub": DEVICE,
        "kind": "camera",
        "org": "demo",
        "api": CLOUD,
        "iat": 1_700_000_000,
        "jti": "jti-1",
    }
    data.update(changes)
    return data


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def config(tmp_path: Path, signer: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    pub = tmp_path / "signing.pub.pem"
    pub.write_bytes(
        signer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    password = tmp_path / "password"
    password.write_text(LABEL_PASSWORD + "\n")
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[device]
id = "AA:BB:CC:DD:EE:FF"
name = "Lobby"
password_file = "{password}"
[cloud]
url = "{CLOUD}"
trust_keys = ["{pub}"]
[paths]
state_dir = "{tmp_path / "state"}"
run_dir = "{tmp_path / "run"}"
"""
    )
    return load(path)


def test_status_of_a_fresh_device(config: Config) -> None:
    status = offline.ask(config, "status")
    assert status == {
        "device_id": DEVICE,
        "kind": "camera",
        "name": "Lobby",
        "state": "provisioning",
        "token": {"present": False},
        "provisioning": {"attempts": 0, "phase": "off", "next_poll_in": None},
        "cloud": {"url": CLOUD, "connected_since": None},
        "version": __version__,
        "daemon": False,
    }
    json.dumps(status)  # printable by `status --json`
    assert not (config.state_dir / STATE_FILE).exists()  # looking changes nothing


def test_set_token_stores_a_verified_token(config: Config, signer: Ed25519PrivateKey) -> None:
    token = sign_token(claims(), signer)
    offline.set_token(config, f" {sealed(token)}\n")  # a camera's: sealed for its label
    record = TokenStore(config.state_dir).load()
    assert (record.device_id, record.token, record.token_source) == (DEVICE, token, "cli")
    status = offline.ask(config, "status")
    assert status["state"] == "disconnected"  # holds a token, the daemon is not running
    assert status["token"] == {
        "present": True,
        "org": "demo",
        "api": CLOUD,
        "jti": "jti-1",
        "iat": 1_700_000_000,
    }


def test_set_token_keeps_the_rest_of_the_state(
    config: Config, signer: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import label_key as label_key_module

    store = TokenStore(config.state_dir)
    kept = base64.b64encode(label_key()).decode()
    stamp = PasswordStamp.of(Path(config.device.password_file))
    store.save(DeviceRecord(device_id=DEVICE, key=kept, key_stamp=stamp, token="old.token"))

    def no_derivation(config: Config, device_id: str) -> bytes:
        raise AssertionError("K was derived again although the state keeps it")

    monkeypatch.setattr(label_key_module, "derive", no_derivation)
    offline.set_token(config, sealed(sign_token(claims(jti="new"), signer)))
    record = store.load()
    assert (record.key, record.key_stamp) == (kept, stamp)  # K is kept and opened the seal
    assert offline.ask(config, "status")["token"]["jti"] == "new"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        # Sealed for this camera's label password: refused for what the token says.
        (lambda good, other: sealed(sign_token(claims(), other)), "signature"),
        (
            lambda good, other: sealed(sign_token(claims(sub="11:22:33:44:55:66"), good)),
            "for device",
        ),
        (lambda good, other: sealed(sign_token(claims(kind="nvr"), good)), "nvr"),
        (
            lambda good, other: sealed(sign_token(claims(api="https://evil.test:8443"), good)),
            "points to",
        ),
        (lambda good, other: sealed("garbage"), "two base64url parts"),
        # Refused for how it came (docs/design.md §2.9): plain, or sealed for another label.
        (lambda good, other: sign_token(claims(), good), PLAIN_REFUSED),
        (
            lambda good, other: sealed(sign_token(claims(), good), "a-squatters-password"),
            "sealed for another password",
        ),
        (lambda good, other: "garbage", "sealed_token"),
    ],
)
def test_a_refused_token_leaves_the_old_state_intact(
    config: Config, signer: Ed25519PrivateKey, make: Any, words: str
) -> None:
    good = sign_token(claims(jti="kept"), signer)
    offline.set_token(config, sealed(good))
    before = (config.state_dir / STATE_FILE).read_bytes()
    bad = make(signer, Ed25519PrivateKey.generate())
    with pytest.raises(TokenError) as info:
        offline.set_token(config, bad)
    assert words in str(info.value)
    assert (config.state_dir / STATE_FILE).read_bytes() == before
    assert TokenStore(config.state_dir).load().token == good


def test_a_state_of_another_device_is_not_shown_and_is_replaced(
    config: Config, signer: Ed25519PrivateKey
) -> None:
    store = TokenStore(config.state_dir)
    store.save(DeviceRecord(device_id="11:22:33:44:55:66", key="S0tLSw==", token="other.tok"))
    assert offline.ask(config, "status")["token"] == {"present": False}
    token = sign_token(claims(), signer)
    offline.set_token(config, sealed(token))
    record = store.load()
    # Nothing of the other device's is kept; K is this device's, derived to open the seal.
    own_key = base64.b64encode(label_key()).decode()
    assert (record.device_id, record.token, record.key) == (DEVICE, token, own_key)


def test_reset_forgets_the_token(config: Config, signer: Ed25519PrivateKey) -> None:
    offline.set_token(config, sealed(sign_token(claims(), signer)))
    offline.reset(config)
    record = TokenStore(config.state_dir).load()
    assert (record.device_id, record.token, record.token_source) == (DEVICE, "", "")
    assert offline.ask(config, "status")["state"] == "provisioning"


def test_reset_of_a_fresh_device_writes_an_empty_state(config: Config) -> None:
    offline.reset(config)
    assert TokenStore(config.state_dir).load() == DeviceRecord(device_id=DEVICE)


def test_an_unreadable_trust_key_is_a_config_error(config: Config, tmp_path: Path) -> None:
    (tmp_path / "signing.pub.pem").unlink()
    with pytest.raises(ConfigError, match=r"cloud\.trust_keys"):
        offline.set_token(config, "a.b")


def test_an_unlinked_nvr_awaits_activation_as_the_daemon_says(config: Config) -> None:
    from dataclasses import replace

    nvr = replace(config, device=replace(config.device, kind="nvr"))
    status = offline.ask(nvr, "status")
    assert status["state"] == "awaiting_activation"
    assert "activation" not in status  # no code registered yet
    from agent.nvr.activation import Activation

    code = Activation("ABCD-EFGH-JK", "c2VjcmV0", 4e9, 86400.0, "https://x/activate")
    TokenStore(config.state_dir).save(DeviceRecord(device_id=DEVICE, activation=code.to_json()))
    status = offline.ask(nvr, "status")
    assert status["activation"] == code.public()
    assert offline.status_of(nvr).state.value == "awaiting_activation"


def _nvr(config: Config) -> Config:
    from dataclasses import replace

    return replace(config, device=replace(config.device, kind="nvr"))


@pytest.mark.parametrize(
    ("record", "told"),
    [
        (DeviceRecord(device_id=DEVICE), offline.NO_CODE_YET),
        (DeviceRecord(device_id=DEVICE, token="t.s"), offline.LINKED_ALREADY),
        (DeviceRecord(device_id=DEVICE, activation={"code": "damaged"}), offline.NO_CODE_YET),
    ],
)
def test_an_nvr_without_a_live_code_says_why(
    config: Config, record: DeviceRecord, told: str
) -> None:
    TokenStore(config.state_dir).save(record)
    with pytest.raises(CamagentError) as caught:
        offline.ask(_nvr(config), "nvr_code")
    assert str(caught.value) == told


def test_an_nvr_shows_its_code_until_it_expires(config: Config) -> None:
    from agent.nvr.activation import Activation

    live = Activation("ABCD-EFGH-JK", "c2VjcmV0", 4e9, 86400.0, "https://x/activate")
    store = TokenStore(config.state_dir)
    store.save(DeviceRecord(device_id=DEVICE, activation=live.to_json()))
    assert offline.ask(_nvr(config), "nvr_code") == live.public()
    old = Activation("ABCD-EFGH-JK", "c2VjcmV0", 1e9, 86400.0, "https://x/activate")
    store.save(DeviceRecord(device_id=DEVICE, activation=old.to_json()))
    with pytest.raises(CamagentError, match=offline.CODE_EXPIRED):
        offline.ask(_nvr(config), "nvr_code")


def test_a_linked_nvr_takes_no_registration_and_asks_no_cloud(config: Config) -> None:
    TokenStore(config.state_dir).save(DeviceRecord(device_id=DEVICE, token="t.s"))
    # The cloud of this config does not exist: a request to it would fail otherwise.
    with pytest.raises(CamagentError) as caught:
        offline.nvr_register(_nvr(config), "rt_token")
    assert str(caught.value) == offline.LINKED_ALREADY
    assert "`camagent reset` unlinks" in offline.LINKED_ALREADY


def test_offline_changes_are_the_daemons_commands(
    config: Config, signer: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One table: a command changed there changes what the CLI does without a daemon.
    from agent import commands

    called: list[tuple[str, str]] = []
    for name in ("status", "reset", "token_set"):
        real = commands.COMMANDS[name]

        async def spy(
            device: commands.Device,
            args: dict[str, Any],
            way: commands.Way,
            real: Any = real,
            name: str = name,
        ) -> Any:
            called.append((name, way))
            return await real.handler(device, args, way)

        monkeypatch.setitem(commands.COMMANDS, name, replace(real, handler=spy))
    offline.set_token(config, sealed(sign_token(claims(), signer)))
    offline.reset(config)
    assert offline.ask(config, "status")["state"] == "provisioning"
    assert called == [("token_set", "cli"), ("reset", "cli"), ("status", "cli")]
