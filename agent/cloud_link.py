"""The daemon's link to its cloud: the one HTTPS session (polls, keys, NVR codes, the
control channel all share it) and the control channel run with the held token.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent import lifecycle as lc
from agent.config import Config
from agent.errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

    from agent.clock import Clock
    from agent.control_channel import CommandHandler

log = logging.getLogger(__name__)


class CloudLink:
    def __init__(
        self,
        config: Config,
        device_id: str,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.rng = rng or random.Random()
        self.clock = clock
        self._session = session
        self._own_session = session is None

    def prepare(self) -> None:
        """At start, a bad ca_file stops the daemon with its reason; cheaply: the context
        itself (with the system's CAs, ~35 ms) is made on first use, after READY=1."""
        ca_file = self.config.cloud.ca_file
        if self._session is not None or not ca_file:
            return
        import ssl

        if not Path(ca_file).is_file():
            raise ConfigError(f"cloud.ca_file {ca_file} does not exist")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"cloud.ca_file {ca_file} is not a PEM bundle: {exc}") from None

    def http(self) -> aiohttp.ClientSession:
        """The session, made on first use (aiohttp is the heaviest import: READY=1 and the
        control socket do not wait for it)."""
        if self._session is None:
            import aiohttp

            from agent.tls import client_context

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_context(self.config.cloud.ca_file)),
                headers={"User-Agent": f"camagent/{__version__}"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()

    async def channel(
        self, token: str, on_command: CommandHandler, post: Callable[[lc.Event], None]
    ) -> None:
        """Keep the control channel up with `token`, reporting to the state machine."""
        from agent.control_channel import ControlChannel, Hello, TokenRevokedError

        channel = ControlChannel(
            self.http(),
            self.config.cloud.url,
            token,
            Hello(
                self.device_id,
                self.config.device.kind,
                __version__,
                self.config.video_targets(),
            ),
            on_command=on_command,
            on_connected=lambda: post(lc.ChannelOpened()),
            on_lost=lambda reason: post(lc.ChannelLost(reason)),
            rng=self.rng,
            clock=self.clock,
        )
        try:
            await channel.run()
        except TokenRevokedError as exc:
            log.warning("%s", exc)
            post(lc.TokenRevoked())
            await asyncio.Event().wait()  # the reset cancels this task; no restart meanwhile
        except Exception as exc:
            # The supervisor restarts the task; meanwhile the device is not connected.
            post(lc.ChannelLost(f"control channel failed: {type(exc).__name__}"))
            raise
