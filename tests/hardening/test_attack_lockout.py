"""Attack 2 of issue 17: wrong passwords from one LAN host locked the installer out.

Before: 8 wrong answers from one address locked the device for every address (the right
password from another host got 429 for up to an hour, and the lock survived a restart).
Now each address is throttled on its own, many addresses together start a global
slow-down, and neither ever refuses the right password from an address that has not
failed. A real daemon (subprocess, local API on 127.0.0.1); clients connect from other
loopback addresses (127.0.0.2, …) to be other hosts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.crash_bench import Daemon, Harness

pytestmark = pytest.mark.e2e

ATTACKER, OWNER = "127.0.0.2", "127.0.0.1"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    device = Harness(tmp_path, random.Random(0)).device("target", local_api=True)
    d = Daemon(device)
    d.start()
    yield d
    d.stop()


async def post(daemon: Daemon, source: str, password: str) -> tuple[int, dict[str, Any]]:
    local = daemon.local_api()
    digest = aiohttp.DigestAuthMiddleware("admin", password)
    pin = aiohttp.Fingerprint(bytes.fromhex(local["fp"]))
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as s,
        s.post(
            f"https://127.0.0.1:{local['port']}/v1/poll-now", ssl=pin, middlewares=(digest,)
        ) as answer,
    ):
        return answer.status, await answer.json()


def test_an_attacker_on_the_lan_never_locks_the_owner_out(daemon: Daemon) -> None:
    right = daemon.device.password

    async def attack() -> None:
        statuses = [(await post(daemon, ATTACKER, "guess"))[0] for _ in range(8)]
        assert statuses == [401] * 4 + [429] * 4  # the attacker's address waits …
        assert (await post(daemon, ATTACKER, right))[0] == 429  # … even with the password
        status, body = await post(daemon, OWNER, right)  # the owner gets in at once
        assert status == 200, body

    asyncio.run(attack())

    daemon.stop()  # the table is kept on stop
    daemon.start()

    async def after_restart() -> None:
        status, body = await post(daemon, ATTACKER, right)
        assert status == 429, body
        assert (await post(daemon, OWNER, right))[0] == 200

    asyncio.run(after_restart())


def test_many_attacking_addresses_slow_every_address_down_but_lock_no_one_out(
    daemon: Daemon,
) -> None:
    right = daemon.device.password

    async def attack() -> None:
        # 20 wrong answers from 20 addresses, one each: no single address is throttled …
        for i in range(20):
            status, _ = await post(daemon, f"127.0.1.{i + 1}", "guess")
            assert status in (401, 429)
        # … but now a new address waits after its first wrong answer,
        assert (await post(daemon, "127.0.2.1", "guess"))[0] == 429
        # and the owner's right password, from an address that has not failed, passes.
        status, body = await post(daemon, OWNER, right)
        assert status == 200, body

    asyncio.run(attack())
