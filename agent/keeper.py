"""The device record, in memory and on disk, and the token gate that guards it.

Every change goes through `save`; if the disk refuses, the daemon keeps running on the
in-memory record and says so to whoever asked for the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from agent import label_key
from agent.clock import Clock
from agent.config import Config
from agent.errors import StateError, TokenError
from agent.token_store import DamagedState, DeviceRecord, TokenStore
from agent.trust import TokenGate, TokenSource, VerifiedToken

log = logging.getLogger(__name__)

Change = Callable[[DeviceRecord], DeviceRecord]
# How often a change the disk refused is tried again (e.g. out of descriptors or space).
RETRY_SAVE_S = 5.0


class StateKeeper:
    def __init__(self, config: Config, device_id: str, store: TokenStore | None = None) -> None:
        self.device_id = device_id
        self.store = store or TokenStore(config.state_dir)
        self.record = DeviceRecord(device_id=device_id)
        self.unsaved: StateError | None = None  # why the last write failed, if it did
        self._refused = asyncio.Event()  # set while the disk has refused a change
        self.config = config
        self.gate = TokenGate(config, device_id, label_key=self.sealing_key)

    def load(self, config: Config) -> None:
        """Read the record (a damaged one is set aside) and make the gate from its keys."""
        self.record = self._read()
        self.gate = self._gate(config, self.record.trusted_keys_pem)
        self._drop_token_if_untrusted()

    def reconfigure(self, config: Config) -> None:
        """A new config (SIGHUP): raises ConfigError, keeping the old gate, if it is bad."""
        self.gate = self._gate(config, self.record.trusted_keys_pem)

    @property
    def needs_keys(self) -> bool:
        """No cloud key to check a token with yet: they are fetched before the next poll."""
        return self.gate.needs_keys

    def accept(self, raw: object, source: TokenSource) -> VerifiedToken:
        """The one gate: every path that brings a token calls this (raises TokenError)."""
        return self.gate.accept(raw, source)

    def trust(self, config: Config, pems: Sequence[str]) -> None:
        """Keys fetched from the cloud: kept, and the gate checks with them from now on."""
        self.save(lambda r: replace(r, trusted_keys_pem=tuple(pems)))
        self.gate = self._gate(config, pems)

    def _gate(self, config: Config, pems: Sequence[str]) -> TokenGate:
        self.config = config
        return TokenGate(config, self.device_id, pems, label_key=self.sealing_key)

    def sealing_key(self) -> bytes:
        """K, for a sealed token: the kept one, or derived now (once; the poll loop derives
        it off the event loop, this rarer path on it) and kept."""
        stamp = label_key.stamp_of(self.config)
        key = label_key.cached(self.record, stamp)
        if key is None:
            key = label_key.derive(self.config, self.device_id)
            self.save(label_key.kept(key, stamp))
        return key

    def save(self, change: Change) -> None:
        try:
            self.record = self.store.update(change)
            self.unsaved = None
        except StateError as exc:
            log.error("%s", exc)
            self.record = change(self.record)
            self.unsaved = exc
            self._refused.set()

    async def keep_saving(self, clock: Clock) -> None:
        """Write the in-memory record again until the disk takes it: a token received while
        the disk refused must survive a restart once the disk is back."""
        while True:
            await self._refused.wait()
            await clock.sleep(RETRY_SAVE_S)
            if self.unsaved is None:  # a later change went through meanwhile
                self._refused.clear()
                continue
            try:
                self.record = self.store.update(self._in_memory)
            except StateError as exc:
                log.error("%s", exc)  # once a minute at most: the repeat filter
                continue
            self.unsaved = None
            self._refused.clear()
            log.info("the device state is saved again")

    def _in_memory(self, _: DeviceRecord) -> DeviceRecord:
        return self.record

    def raise_if_unsaved(self, what: str) -> None:
        # The person who asked must know: the change holds only until the daemon stops.
        if self.unsaved is not None:
            raise StateError(
                f"{what} is in use but could not be saved, so it is lost when the daemon "
                f"stops ({self.unsaved}); fix the state directory, then set it again"
            )

    def _read(self) -> DeviceRecord:
        try:
            record = self.store.load()
        except DamagedState as exc:
            # Only content that fails to decrypt or parse is moved aside; a state that
            # cannot be read (EACCES, EROFS) raises: the token in it is not lost.
            aside = self.store.set_aside()
            log.error("%s; moved it to %s and starting with a fresh state", exc, aside)
            record = DeviceRecord()
        if record.device_id == self.device_id:
            return record
        if record.device_id:
            log.warning(
                "the state belongs to device %s, this is %s: starting afresh",
                record.device_id,
                self.device_id,
            )
        record = DeviceRecord(device_id=self.device_id)
        try:
            self.store.update(lambda _: record)
        except StateError as exc:
            log.error("%s", exc)
        return record

    def _drop_token_if_untrusted(self) -> None:
        """A held token that no longer verifies (new cloud, new keys) is useless: provision."""
        if not self.record.has_token or self.gate.needs_keys:
            return
        try:
            self.gate.check(self.record.token, "cli")
        except TokenError as exc:
            log.warning("the stored token is no longer accepted (%s): provisioning again", exc)
            self.save(DeviceRecord.without_token)
