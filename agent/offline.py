"""What the CLI does to the state when no daemon answers on the control socket.

Every change holds the daemon lock (agent.instance_lock) for its duration, so no daemon
can start in the middle of it; if a daemon holds the lock (it is starting, or its socket
is elsewhere), the change goes through that daemon instead, never under it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from agent import control_socket, identity, label_key
from agent.config import Config
from agent.errors import CamagentError, DaemonUnavailable
from agent.instance_lock import DaemonRunning, held
from agent.lifecycle import DeviceState, unlinked_state
from agent.status import Status
from agent.token_codec import token_summary
from agent.token_store import DeviceRecord, TokenStore
from agent.trust import TokenGate

T = TypeVar("T")
# A daemon that holds the lock opens its control socket within milliseconds.
SOCKET_WAIT_S = 10.0


def status_of(config: Config) -> Status:
    device_id = identity.device_id(config)
    record = TokenStore(config.state_dir).load()
    mine = record.device_id == device_id
    token = record.token if mine else ""
    kind = config.device.kind
    activation = _live_activation(record) if mine and not token and kind == "nvr" else None
    return Status(
        device_id=device_id,
        kind=kind,
        name=config.device.name,
        state=DeviceState.DISCONNECTED if token else unlinked_state(kind),
        cloud_url=config.cloud.url,
        daemon=False,
        token=token_summary(token),
        activation=activation,
    )


def status(config: Config) -> dict[str, Any]:
    return status_of(config).to_json()


def reset(config: Config) -> None:
    device_id = identity.device_id(config)

    def offline() -> None:
        store = TokenStore(config.state_dir)
        store.update(lambda r: replace(r.without_token(), device_id=device_id))

    _locked_or_through_daemon(config, offline, "reset", {})


def set_token(config: Config, token: str) -> None:
    """Verify like any other token, then store it; the daemon connects with it on start."""
    _locked_or_through_daemon(
        config, lambda: _store_token(config, token), "token_set", {"token": token}
    )


def _store_token(config: Config, raw: str) -> None:
    device_id = identity.device_id(config)
    store = TokenStore(config.state_dir)
    record = store.load()
    ours = record.device_id == device_id
    pems = record.trusted_keys_pem if ours else ()
    stamp = label_key.stamp_of(config)
    key = label_key.cached(record, stamp) if ours else None
    derived: list[bytes] = []

    def sealing_key() -> bytes:
        if key is not None:
            return key
        derived.append(label_key.derive(config, device_id))
        return derived[-1]

    gate = TokenGate(config, device_id, pems, label_key=sealing_key)
    if gate.needs_keys:
        pems = tuple(asyncio.run(_fetch_keys(config)))
        gate = TokenGate(config, device_id, pems, label_key=sealing_key)
    token = gate.accept(raw, "cli")

    def change(r: DeviceRecord) -> DeviceRecord:
        if r.device_id != device_id:
            r = DeviceRecord(device_id=device_id)
        if derived:  # K derived for the seal: kept, as the poll would have kept it
            r = label_key.kept(derived[-1], stamp)(r)
        return replace(r.with_token(token.raw, token.source), trusted_keys_pem=tuple(pems))

    store.update(change)


def _locked_or_through_daemon(
    config: Config, offline: Callable[[], T], cmd: str, args: dict[str, Any]
) -> T | Any:
    try:
        with held(config.state_dir):
            return offline()
    except DaemonRunning as running:
        return _through_daemon(config, cmd, args, running)


def _through_daemon(config: Config, cmd: str, args: dict[str, Any], running: DaemonRunning) -> Any:
    deadline = time.monotonic() + SOCKET_WAIT_S
    while True:
        try:
            return control_socket.request(config.control_socket, cmd, args)
        except DaemonUnavailable:
            if time.monotonic() >= deadline:
                raise CamagentError(
                    f"{running}, but it does not answer on {config.control_socket}: "
                    "try again when it has started, or stop it first"
                ) from None
            time.sleep(0.1)  # the daemon took the lock and is opening its socket


async def _fetch_keys(config: Config) -> list[str]:
    import aiohttp

    from agent.provisioning.client import fetch_keys
    from agent.tls import client_context

    connector = aiohttp.TCPConnector(ssl=client_context(config.cloud.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await fetch_keys(session, config.cloud.url)


def _live_activation(record: DeviceRecord) -> dict[str, Any] | None:
    from agent.nvr.activation import Activation

    if not record.activation:
        return None
    try:
        activation = Activation.from_json(record.activation)
    except (KeyError, TypeError, ValueError):
        return None
    return activation.public() if activation.expires_at > time.time() else None


def nvr_code(config: Config) -> dict[str, Any]:
    """The code the daemon registered last, if it is still valid."""
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

    def offline() -> None:
        device_id = identity.device_id(config)
        record = TokenStore(config.state_dir).load()
        if record.has_token and record.device_id == device_id:
            raise CamagentError(
                "this NVR is linked to the cloud already (`camagent reset` unlinks)"
            )
        device_token = asyncio.run(_register(config, device_id, token))
        _store_token(config, device_token)

    _locked_or_through_daemon(config, offline, "nvr_register", {"token": token})


async def _register(config: Config, device_id: str, token: str) -> str:
    import aiohttp

    from agent.nvr.link import NvrLink
    from agent.tls import client_context

    store = TokenStore(config.state_dir)
    link = NvrLink(config, device_id, store.load, lambda change: None)
    connector = aiohttp.TCPConnector(ssl=client_context(config.cloud.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await link.register(session, token)
