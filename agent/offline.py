"""What the CLI does to the state file when no daemon is running (DESIGN §10).

Every change holds the state lock, so a daemon starting at the same moment waits for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from agent import __version__, identity
from agent.config import Config
from agent.errors import CamagentError
from agent.token_codec import token_summary
from agent.token_store import DeviceRecord, TokenStore
from agent.trust import TokenVerifier


def status(config: Config) -> dict[str, Any]:
    device_id = identity.device_id(config)
    record = TokenStore(config.state_dir).load()
    token = record.token if record.device_id == device_id else ""
    return {
        "device_id": device_id,
        "kind": config.device.kind,
        "name": config.device.name,
        "state": "disconnected" if token else "provisioning",
        "token": token_summary(token),
        "provisioning": {"attempts": 0, "phase": "off", "next_poll_in": None},
        "cloud": {"url": config.cloud.url, "connected_since": None},
        "version": __version__,
        "daemon": False,
    }


def reset(config: Config) -> None:
    device_id = identity.device_id(config)
    TokenStore(config.state_dir).update(lambda r: replace(r.without_token(), device_id=device_id))


def set_token(config: Config, token: str) -> None:
    """Verify like any other token, then store it; the daemon connects with it on start."""
    device_id = identity.device_id(config)
    store = TokenStore(config.state_dir)
    record = store.load()
    pems = record.trusted_keys_pem if record.device_id == device_id else ()
    verifier = TokenVerifier(config, device_id, pems)
    if verifier.needs_keys:
        pems = tuple(asyncio.run(_fetch_keys(config)))
        verifier = TokenVerifier(config, device_id, pems)
    verifier.verify(token)

    def change(r: DeviceRecord) -> DeviceRecord:
        if r.device_id != device_id:
            r = DeviceRecord(device_id=device_id)
        return replace(r.with_token(token.strip(), "cli"), trusted_keys_pem=tuple(pems))

    store.update(change)


async def _fetch_keys(config: Config) -> list[str]:
    import aiohttp

    from agent.provisioning.client import fetch_keys
    from agent.tls import client_context

    connector = aiohttp.TCPConnector(ssl=client_context(config.cloud.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await fetch_keys(session, config.cloud.url)


def nvr_code(config: Config) -> dict[str, Any]:
    """The code the daemon registered last, if it is still valid."""
    import time

    from agent.nvr.activation import Activation

    record = TokenStore(config.state_dir).load()
    if record.has_token:
        raise CamagentError("this NVR is linked to the cloud already (`camagent reset` unlinks)")
    if not record.activation:
        raise CamagentError("no activation code yet: start camagent, it registers one")
    activation = Activation.from_json(record.activation)
    if activation.expires_at <= time.time():
        raise CamagentError("the last activation code expired: start camagent for a new one")
    return activation.public()


def nvr_register(config: Config, token: str) -> None:
    """Cloud Registration without a daemon; the token is stored for it to connect with."""
    device_id = identity.device_id(config)
    record = TokenStore(config.state_dir).load()
    if record.has_token and record.device_id == device_id:
        raise CamagentError("this NVR is linked to the cloud already (`camagent reset` unlinks)")
    device_token = asyncio.run(_register(config, device_id, token))
    set_token(config, device_token)


async def _register(config: Config, device_id: str, token: str) -> str:
    import aiohttp

    from agent.nvr.link import NvrLink
    from agent.tls import client_context

    store = TokenStore(config.state_dir)
    link = NvrLink(config, device_id, store.load, lambda change: None)
    connector = aiohttp.TCPConnector(ssl=client_context(config.cloud.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await link.register(session, token)
