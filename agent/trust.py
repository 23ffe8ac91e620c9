"""Which cloud keys the device trusts, and the one gate every token passes through.

`TokenGate.accept(raw, source)` is the only way to make a `VerifiedToken`, and the state
machine's `TokenAccepted` and `SaveToken` carry a `VerifiedToken`, not text: mypy shows
that no path (poll, CLI, LAN push, QR card, the cloud's `set_token`, NVR registration)
can store a token that skipped the checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.config import Config
from agent.errors import CamagentError, ConfigError, TokenError, WireError
from agent.provisioning.wire import unseal_token
from agent.token_codec import TokenClaims, load_public_key, verify_token

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Where a token came from: kept in the state and shown in the journal.
TokenSource = Literal["poll", "cli", "lan", "qr", "cloud", "registration"]
# A camera takes a token from these only sealed under its K (docs/design.md §2.9): only a
# party that knew the label password can make one it opens. A poll's token is sealed on
# the wire already; an NVR's come by its own secret (poll, registration token).
OUT_OF_BAND: frozenset[TokenSource] = frozenset({"cli", "lan", "qr", "cloud"})
PLAIN_REFUSED = (
    "this camera takes a token from outside its poll only sealed for its label password "
    "(the cloud's `sealed_token`, or the console's token card): a plain token could come "
    "from anyone who added its ID"
)


class _Seal:
    """Made once, below: holding one is what being this module means."""


_SEAL = _Seal()


@dataclass(frozen=True)
class VerifiedToken:
    """A token that passed the gate: signature, subject, kind and cloud checked."""

    claims: TokenClaims
    source: TokenSource
    seal: InitVar[_Seal]

    def __post_init__(self, seal: _Seal) -> None:
        if seal is not _SEAL:
            raise TypeError("only TokenGate.accept makes a VerifiedToken")

    @property
    def raw(self) -> str:
        return self.claims.raw


def configured_keys(config: Config) -> list[Ed25519PublicKey]:
    keys = []
    for name in config.cloud.trust_keys:
        try:
            pem = Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{config.source}: cloud.trust_keys: cannot read {name}: {exc.strerror}"
            ) from None
        try:
            keys.append(load_public_key(pem, name))
        except TokenError as exc:
            raise ConfigError(f"{config.source}: cloud.trust_keys: {exc}") from None
    return keys


class TokenGate:
    """Checks a token from any path: signature, subject, kind, and the cloud it points to.

    Keys come from `[cloud] trust_keys`; when that list is empty, from the keys fetched
    once from the configured cloud over verified TLS (kept in the device state).
    """

    def __init__(
        self,
        config: Config,
        device_id: str,
        fetched_pems: Sequence[str] = (),
        label_key: Callable[[], bytes] | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.fetched_pems = tuple(fetched_pems)
        self.label_key = label_key  # K, for sealed tokens; derived on first use
        self.keys = configured_keys(config)
        if not self.keys:
            self.keys = [load_public_key(p.encode(), "fetched cloud key") for p in fetched_pems]

    @property
    def needs_keys(self) -> bool:
        return not self.keys

    def accept(self, raw: object, source: TokenSource) -> VerifiedToken:
        """The token, verified; raises TokenError with the reason it is refused. A camera's
        token from outside the poll is opened with K first (it must be sealed)."""
        if not isinstance(raw, str):
            raise TokenError("a token is text (payload.signature)")
        if source in OUT_OF_BAND and self.config.device.kind == "camera":
            raw = self._open(raw, source)
        return self.check(raw, source)

    def check(self, raw: str, source: TokenSource) -> VerifiedToken:
        """A plain token's checks alone: a poll's (opened on the wire), a stored one's."""
        claims = verify_token(
            raw,
            self.keys,
            device_id=self.device_id,
            kind=self.config.device.kind,
            cloud_url=self.config.cloud.url,
        )
        return VerifiedToken(claims, source, _SEAL)

    def _open(self, sealed: str, source: TokenSource) -> str:
        text = sealed.strip()
        if "." in text:
            if source == "cli" and not Path(self.config.device.password_file).exists():
                # No label password at all (a server made a camera by install.sh with a
                # token, never labelled): there is no K to seal under, nothing for a
                # squatter's token to be told apart from, and `token set` is root on the
                # device itself. Every other path still needs a seal.
                return text
            raise TokenError(PLAIN_REFUSED)
        if self.label_key is None:
            raise TokenError("no label password to open a sealed token with")
        try:
            key = self.label_key()
        except CamagentError as exc:
            raise TokenError(f"cannot open a sealed token: {exc}") from None
        try:
            return unseal_token(key, self.device_id, text)
        except WireError as exc:
            raise TokenError(
                f"{exc}; a token sealed for another password (someone who added this camera "
                "with a password of their own) is never taken"
            ) from None
