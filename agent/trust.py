"""Which cloud keys the device trusts, and the one gate every token passes through."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import Config
from agent.errors import ConfigError, TokenError
from agent.token_codec import TokenClaims, load_public_key, verify_token

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


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


class TokenVerifier:
    """Checks a token from any path: signature, subject, kind, and the cloud it points to.

    Keys come from `[cloud] trust_keys`; when that list is empty, from the keys fetched
    once from the configured cloud over verified TLS (kept in the device state).
    """

    def __init__(self, config: Config, device_id: str, fetched_pems: Sequence[str] = ()) -> None:
        self.config = config
        self.device_id = device_id
        self.keys = configured_keys(config)
        if not self.keys:
            self.keys = [load_public_key(p.encode(), "fetched cloud key") for p in fetched_pems]

    @property
    def needs_keys(self) -> bool:
        return not self.keys

    def verify(self, token: str) -> TokenClaims:
        return verify_token(
            token,
            self.keys,
            device_id=self.device_id,
            kind=self.config.device.kind,
            cloud_url=self.config.cloud.url,
        )
