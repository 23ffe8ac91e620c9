"""The token gate's sealing rule (docs/design.md §2.9, issue 25): a camera takes a token
from outside its poll only sealed under its K, i.e. from someone who knew its label
password; the poll, a stored token and an NVR's paths are as before."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import offline
from agent.config import CloudConfig, Config, DeviceConfig, PathsConfig
from agent.errors import ConfigError, TokenError
from agent.keeper import StateKeeper
from agent.provisioning.wire import seal_token
from agent.token_store import TokenStore
from agent.trust import OUT_OF_BAND, PLAIN_REFUSED, TokenGate, TokenSource
from tests.agent.tokens import (
    CLOUD,
    DEVICE,
    LABEL_PASSWORD,
    gate,
    label_key,
    public_pem,
    sealed,
    signed,
    write_public_key,
)

SQUATTER_PASSWORD = "what-a-squatter-typed"
OUTSIDE_THE_POLL: tuple[TokenSource, ...] = ("cli", "lan", "qr", "cloud")


def test_the_paths_outside_the_poll_are_the_ones_the_design_names() -> None:
    assert set(OUT_OF_BAND) == set(OUTSIDE_THE_POLL)
    assert set(get_args(TokenSource)) - OUT_OF_BAND == {"poll", "registration"}


@pytest.mark.parametrize("source", OUTSIDE_THE_POLL)
def test_a_camera_takes_a_token_sealed_for_its_label_password(source: TokenSource) -> None:
    token = signed(jti="sealed-1")
    verified = gate().accept(sealed(token), source)
    assert (verified.raw, verified.source, verified.claims.jti) == (token, source, "sealed-1")
    # As pasted from a file or a terminal: the whitespace around it does not matter.
    assert gate().accept(f"  {sealed(token)}\n", source).raw == token


@pytest.mark.parametrize("source", OUTSIDE_THE_POLL)
def test_a_plain_token_is_refused_on_every_path_outside_the_poll(source: TokenSource) -> None:
    """A plain token could come from anyone who added the camera's ID: the reason says so."""
    for text in (signed(), f" {signed()}\n"):
        with pytest.raises(TokenError) as info:
            gate().accept(text, source)
        assert str(info.value) == PLAIN_REFUSED
    assert "sealed_token" in PLAIN_REFUSED
    assert "anyone who added its ID" in PLAIN_REFUSED


@pytest.mark.parametrize("source", OUTSIDE_THE_POLL)
def test_a_token_sealed_under_another_password_is_refused(source: TokenSource) -> None:
    """What a MAC squatter's org gets back from the cloud: signed for this device, sealed
    under the K of the password the squatter typed."""
    squatters = sealed(signed(org="squatter"), SQUATTER_PASSWORD)
    with pytest.raises(TokenError) as info:
        gate().accept(squatters, source)
    message = str(info.value)
    assert "does not open with this device's key" in message
    assert "a token sealed for another password" in message
    # The same token opens for a device whose label carries the squatter's password:
    # the refusal is the password's, not the token's.
    assert gate(password=SQUATTER_PASSWORD).accept(squatters, source).claims.org == "squatter"


def test_a_token_sealed_for_another_device_is_refused() -> None:
    other = "11:22:33:44:55:66"
    # This device's K, but sealed with another device ID as the associated data.
    with pytest.raises(TokenError, match="does not open with this device's key"):
        gate().accept(seal_token(label_key(), other, signed()), "cli")
    # Another device's card, with the same label password.
    with pytest.raises(TokenError, match="does not open"):
        gate().accept(sealed(signed(), device_id=other), "lan")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sub": "11:22:33:44:55:66"}, "not this device"),
        ({"kind": "nvr"}, "nvr"),
        ({"api": "https://evil.example.com"}, "points to"),
    ],
)
def test_a_sealed_token_still_passes_every_check(changes: dict[str, str], reason: str) -> None:
    """Sealing is a check more, not one less: an opened token is verified as any token."""
    with pytest.raises(TokenError, match=reason):
        gate().accept(sealed(signed(**changes)), "qr")
    forged = signed(Ed25519PrivateKey.generate())
    with pytest.raises(TokenError, match="signature"):
        gate().accept(sealed(forged), "qr")


@pytest.mark.parametrize("text", ["garbage", "", "   ", "AAAA", "not base64!"])
def test_text_that_is_no_sealed_token_is_refused(text: str) -> None:
    with pytest.raises(TokenError):
        gate().accept(text, "cli")


def test_the_poll_and_a_stored_token_need_no_seal() -> None:
    """The poll's token was sealed on the wire and opened by the poller; a stored token
    was checked when it came: `check`, and `accept` from the poll, take it plain."""
    token = signed()
    assert gate().accept(token, "poll").raw == token
    assert gate().accept(token, "registration").raw == token
    for source in OUTSIDE_THE_POLL:
        assert gate().check(token, source).source == source
    with pytest.raises(TokenError, match="signature"):
        gate().check(signed(Ed25519PrivateKey.generate()), "cli")


@pytest.mark.parametrize("source", OUTSIDE_THE_POLL)
def test_an_nvr_takes_its_tokens_as_before(source: TokenSource) -> None:
    """An NVR has no label password: its tokens come by its own secret, plain."""
    token = signed(kind="nvr")
    assert gate(kind="nvr").accept(token, source).raw == token


def test_without_a_label_password_a_sealed_token_cannot_be_opened() -> None:
    config = Config(device=DeviceConfig(id=DEVICE), cloud=CloudConfig(url=CLOUD))
    bare = TokenGate(config, DEVICE, [public_pem()])
    with pytest.raises(TokenError, match="no label password"):
        bare.accept(sealed(signed()), "cli")

    def unreadable() -> bytes:
        raise ConfigError("cannot read the password file /nonexistent")

    broken = TokenGate(config, DEVICE, [public_pem()], label_key=unreadable)
    with pytest.raises(TokenError, match="cannot open a sealed token: cannot read the password"):
        broken.accept(sealed(signed()), "cli")
    # The plain refusal comes first: K is not needed to refuse a plain token.
    with pytest.raises(TokenError, match="only sealed"):
        broken.accept(signed(), "qr")


@pytest.mark.parametrize("source", OUTSIDE_THE_POLL)
def test_with_no_password_file_at_all_only_token_set_takes_a_plain_token(
    source: TokenSource, tmp_path: Path
) -> None:
    """A server made a camera by install.sh with a token, never labelled: no K to seal
    under. `token set` (root on the device itself) takes the plain token; a card, a LAN
    push or the cloud's set_token still do not."""
    config = Config(
        device=DeviceConfig(id=DEVICE, password_file=str(tmp_path / "none")),
        cloud=CloudConfig(url=CLOUD),
    )
    bare = TokenGate(config, DEVICE, [public_pem()])
    if source == "cli":
        assert bare.accept(signed(jti="bare"), source).claims.jti == "bare"
    else:
        with pytest.raises(TokenError, match="only sealed"):
            bare.accept(signed(), source)
    # Once there is a password file, `token set` wants the seal like every other path.
    (tmp_path / "none").write_text("a-label-password\n")
    with pytest.raises(TokenError, match="only sealed"):
        bare.accept(signed(), source)


def _device_config(tmp_path: Path, password: str = LABEL_PASSWORD) -> Config:
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    return Config(
        device=DeviceConfig(id=DEVICE, password_file=str(password_file)),
        cloud=CloudConfig(url=CLOUD, trust_keys=(str(write_public_key(tmp_path)),)),
        paths=PathsConfig(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run")),
    )


def test_the_daemon_derives_k_once_keeps_it_and_derives_again_for_a_new_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import label_key as label_key_module

    derived: list[str] = []
    real_derive = label_key_module.derive

    def counting(config: Config, device_id: str) -> bytes:
        derived.append(device_id)
        return real_derive(config, device_id)

    monkeypatch.setattr(label_key_module, "derive", counting)
    config = _device_config(tmp_path)
    keeper = StateKeeper(config, DEVICE)
    keeper.load(config)
    for jti in ("a", "b"):
        assert keeper.accept(sealed(signed(jti=jti)), "lan").claims.jti == jti
    assert len(derived) == 1
    record = TokenStore(config.state_dir).load()
    assert record.provisioning_key() == label_key()  # kept in the state, as the poll keeps it

    # A new password file (a new label): K is derived again, and the old seal is refused.
    (tmp_path / "password").write_text("a-new-label-password\n")
    with pytest.raises(TokenError, match="does not open"):
        keeper.accept(sealed(signed(jti="c")), "lan")
    assert len(derived) == 2
    new = keeper.accept(sealed(signed(jti="d"), "a-new-label-password"), "lan")
    assert new.claims.jti == "d"


def test_token_set_without_a_daemon_opens_the_seal_and_keeps_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config = _device_config(tmp_path)
    with pytest.raises(TokenError, match="only sealed"):
        offline.set_token(config, signed())
    with pytest.raises(TokenError, match="sealed for another password"):
        offline.set_token(config, sealed(signed(), SQUATTER_PASSWORD))
    assert not TokenStore(config.state_dir).load().has_token
    offline.set_token(config, sealed(signed(jti="set")))
    record = TokenStore(config.state_dir).load()
    assert (record.token, record.token_source) == (signed(jti="set"), "cli")
    assert record.provisioning_key() == label_key()  # the daemon need not derive it again
