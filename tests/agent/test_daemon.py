"""The whole daemon in process: a fake clock, a fake cloud over real TLS, real state files,
a real control socket. Times are asserted exactly: the clock moves only when told.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from agent import control_socket
from agent.backoff import Backoff
from agent.config import (
    CloudConfig,
    Config,
    DeviceConfig,
    LocalApiConfig,
    PathsConfig,
    ProvisioningConfig,
)
from agent.daemon import Daemon
from agent.lifecycle import DeviceState
from agent.provisioning.wire import derive_key
from agent.status import password_hint
from agent.token_codec import sign_token
from agent.token_store import TokenStore
from agent.trust import PLAIN_REFUSED
from tests.agent.clock import START, FakeClock, eventually
from tests.agent.fake_cloud import FakeCloud, running
from tests.agent.tokens import DEVICE, sealed
from tests.agent.tokens import KEY as SIGNING_KEY
from tests.agent.tokens import payload as token_payload

PASSWORD = "label-password-1"
K = derive_key(PASSWORD, DEVICE)
SCHEDULE = ProvisioningConfig(
    fast_interval=60.0, fast_attempts=2, slow_interval=3600.0, slow_jitter=0.0, long_poll=0.0
)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # A short path: a Unix socket's name has at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="cad", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_config(tmp: Path, run_dir: Path, url: str, kind: str = "camera") -> Config:
    password = tmp / "password"
    password.write_text(PASSWORD + "\n")
    return Config(
        device=DeviceConfig(id=DEVICE, kind=kind, password_file=str(password)),
        cloud=CloudConfig(url=url),
        provisioning=SCHEDULE,
        paths=PathsConfig(state_dir=str(tmp / "state"), run_dir=str(run_dir)),
        local_api=LocalApiConfig(enabled=False),
    )


def token_for(url: str, kind: str = "camera", jti: str = "t1") -> str:
    return sign_token(token_payload(api=url, kind=kind, jti=jti), SIGNING_KEY)


def sealed_for(url: str, jti: str = "t1") -> str:
    """A camera's token as it comes outside the poll: sealed for its label password."""
    return sealed(token_for(url, jti=jti), PASSWORD)


@asynccontextmanager
async def daemon_running(
    tmp: Path, run_dir: Path, kind: str = "camera", tweak: Callable[[Config], Config] = lambda c: c
) -> AsyncIterator[tuple[Daemon, FakeCloud, FakeClock, str]]:
    clock = FakeClock()
    cloud = FakeCloud(clock, key=K)
    async with running(cloud, tmp / "cloud") as (url, session):
        config = tweak(make_config(tmp, run_dir, url, kind))
        daemon = Daemon(config, clock=clock, session=session)
        task = asyncio.create_task(daemon.run())
        try:
            await eventually(lambda: daemon.state is not None, what="the daemon to start")
            yield daemon, cloud, clock, url
        finally:
            daemon.stop()
            assert await asyncio.wait_for(task, 10) == 0


async def test_polls_on_schedule_then_hints_then_connects_with_the_token(
    tmp_path: Path, run_dir: Path
) -> None:
    async with daemon_running(tmp_path, run_dir) as (daemon, cloud, clock, url):
        await eventually(lambda: len(cloud.polls) == 1, what="the first poll")
        assert daemon.state is DeviceState.PROVISIONING

        def polls_made(count: int) -> Callable[[], bool]:
            return lambda: len(cloud.polls) == count

        for count in (2, 3, 4):
            await clock.skip_to_next_wake()
            await eventually(polls_made(count))
        # The first request at start, two more fast ones, then the hourly phase.
        assert [t - START for t in cloud.polls] == [0, 60, 120, 3720]
        status = daemon.status()
        assert status.provisioning.phase == "slow"
        assert status.hint == password_hint(4)
        assert status.to_json()["provisioning"]["hint"] == password_hint(4)
        assert status.to_json()["provisioning"]["last_result"] == "no token yet"

        cloud.token = token_for(url)
        await clock.skip_to_next_wake()
        await eventually(lambda: daemon.state is DeviceState.CONNECTED, what="connected")
        assert [t - START for t in cloud.polls][-1] == 3720 + 3600
        assert cloud.channels == [token_for(url)]
        assert TokenStore(daemon.config.state_dir).load().token == token_for(url)
        assert daemon.status().to_json()["provisioning"] == {
            "attempts": 0,
            "phase": "off",
            "next_poll_in": None,
            "last_attempt": 5,
            "last_result": "token received",
            "last_at": pytest.approx(clock.wall()),
        }
        # A device holding a token never polls: no poll loop, no schedule, nothing asleep.
        assert not daemon.supervisor.running("poll loop")
        assert daemon.poller.schedule is None
        assert clock.next_wake() is None


async def test_a_wrong_password_is_hinted_only_when_every_poll_was_answered(
    tmp_path: Path, run_dir: Path
) -> None:
    async with daemon_running(tmp_path, run_dir) as (daemon, cloud, clock, _):
        await eventually(lambda: len(cloud.polls) == 1)
        assert daemon.status().hint is None  # still in the fast phase
        await clock.skip_to_next_wake()
        await eventually(lambda: len(cloud.polls) == 2)
        assert daemon.status().hint is None


async def test_revocation_provisions_again_and_reset_and_token_set_go_through_the_table(
    tmp_path: Path, run_dir: Path
) -> None:
    async with daemon_running(tmp_path, run_dir) as (daemon, cloud, clock, url):
        await eventually(lambda: len(cloud.polls) == 1)
        first = token_for(url, jti="first")
        # token set through the command table, as the control socket calls it
        answer = await daemon.commands.control("token_set", {"token": sealed(first, PASSWORD)})
        assert answer["token"]["jti"] == "first"
        await eventually(lambda: daemon.state is DeviceState.CONNECTED)
        assert cloud.channels == [first]

        # the cloud revokes it (close code 4401): forgotten, provisioning from the start
        await cloud.revoke()
        await eventually(lambda: daemon.state is DeviceState.PROVISIONING, what="revocation")
        assert TokenStore(daemon.config.state_dir).load().token == ""
        await eventually(lambda: len(cloud.polls) == 2, what="a poll right after revocation")
        assert cloud.polls[-1] == clock.now

        # the same command through the real control socket
        second = sealed_for(url, jti="second")
        sock = daemon.config.control_socket
        status = await asyncio.to_thread(
            control_socket.request, sock, "token_set", {"token": second}
        )
        assert status["state"] in ("connecting", "connected")
        await eventually(lambda: daemon.state is DeviceState.CONNECTED)

        # reset: forgotten and polling again at once
        status = await asyncio.to_thread(control_socket.request, sock, "reset")
        assert status["state"] == "provisioning"
        assert status["token"] == {"present": False}
        await eventually(lambda: len(cloud.polls) == 3)

        # a forged token never reaches the state machine: sealed for this camera, it is
        # refused for what it says; plain, or sealed for another password, for how it came
        forged = sign_token(token_payload(api=url, sub="11:22:33:44:55:66"), SIGNING_KEY)
        with pytest.raises(Exception, match="not this device"):
            await daemon.commands.control("token_set", {"token": sealed(forged, PASSWORD)})
        with pytest.raises(Exception, match="sealed") as plain:
            await daemon.commands.control("token_set", {"token": token_for(url)})
        assert str(plain.value) == PLAIN_REFUSED
        squatters = sealed(token_for(url), "a-squatters-password")
        with pytest.raises(Exception, match="sealed for another password"):
            await daemon.commands.control("token_set", {"token": squatters})
        assert daemon.state is DeviceState.PROVISIONING
        assert TokenStore(daemon.config.state_dir).load().token == ""


async def test_cloud_commands_come_from_the_same_table(tmp_path: Path, run_dir: Path) -> None:
    async with daemon_running(tmp_path, run_dir) as (daemon, cloud, _, url):
        await eventually(lambda: len(cloud.polls) == 1)  # the cloud's keys are known by then
        ok, data = await daemon.commands.cloud("ping", {})
        assert ok
        assert data["device_id"] == DEVICE
        assert await daemon.commands.cloud("status", {}) == (False, "unknown command 'status'")
        assert await daemon.commands.cloud("set_token", {"token": 5}) == (
            False,
            "a token is text (payload.signature)",
        )
        # The cloud's set_token is a path outside the poll too: plain is refused.
        assert await daemon.commands.cloud("set_token", {"token": token_for(url)}) == (
            False,
            PLAIN_REFUSED,
        )
        assert daemon.state is DeviceState.PROVISIONING
        assert await daemon.commands.cloud("set_token", {"token": sealed_for(url)}) == (
            True,
            "token replaced",
        )
        await eventually(lambda: daemon.state is DeviceState.CONNECTED)


async def test_an_nvr_renews_its_code_before_it_expires(tmp_path: Path, run_dir: Path) -> None:
    def nvr_schedule(config: Config) -> Config:
        return replace(
            config,
            provisioning=replace(SCHEDULE, fast_attempts=0),
        )

    async with daemon_running(tmp_path, run_dir, kind="nvr", tweak=nvr_schedule) as (
        daemon,
        cloud,
        clock,
        url,
    ):
        await eventually(lambda: len(cloud.polls) == 1, what="the first poll")
        assert daemon.state is DeviceState.AWAITING_ACTIVATION
        assert len(cloud.registrations) == 1
        status = daemon.status().to_json()
        assert status["activation"]["code"]
        assert "hint" not in status["provisioning"]  # an NVR has no label password
        secret = cloud.registrations[0][1]
        # Polls at 0 and 3600 s; the code (7200 s) is renewed 720 s before it ends.
        await clock.skip_to_next_wake()
        await eventually(lambda: len(cloud.polls) == 2, what="the second poll")
        await clock.skip_to_next_wake()
        await eventually(lambda: len(cloud.registrations) == 2, what="the renewal")
        renewed_at, renewed_secret = cloud.registrations[1]
        # 7200 s less the Date header's one-second resolution, less a tenth of that
        assert renewed_at - START == pytest.approx(7199 - 719.9, abs=1.0)
        assert renewed_secret == secret  # a code shown before still unlocks the token
        assert [t - START for t in cloud.polls] == [0, 3600]
        cloud.token = token_for(url, kind="nvr")
        await clock.skip_to_next_wake()
        await eventually(lambda: daemon.state is DeviceState.CONNECTED)
        assert [t - START for t in cloud.polls] == [0, 3600, 7200]


async def test_an_unhealthy_task_stops_the_watchdog_pings(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(run_dir / "notify.sock"))
    receiver.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(run_dir / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    def received() -> list[bytes]:
        messages = []
        while True:
            try:
                messages.append(receiver.recv(4096))
            except BlockingIOError:
                return messages

    seen: list[bytes] = []

    def pinged() -> bool:
        seen.extend(received())
        return b"WATCHDOG=1" in seen

    with receiver:
        async with daemon_running(tmp_path, run_dir) as (daemon, _, clock, _):
            await eventually(pinged)
            daemon.supervisor.backoff = Backoff(base=0.01, cap=0.01)

            async def wedged() -> None:
                raise OSError(24, "Too many open files")

            async def one_period() -> None:
                """Watchdog and supervisor run on the fake clock: move it one watchdog
                period, and wait for the watchdog to have checked (and slept again)."""
                checks = clock.slept.count(0.05)
                clock.advance_to(clock.now + 0.05)
                await eventually(lambda: clock.slept.count(0.05) > checks, what="a check")

            daemon.supervisor.start("control channel", wedged)
            while not daemon.unhealthy():
                await one_period()
            received()  # pings from before it was unhealthy
            for _ in range(10):
                await one_period()
            assert b"WATCHDOG=1" not in received()
            await daemon.supervisor.stop("control channel")
            await one_period()
            assert b"WATCHDOG=1" in received()


async def test_a_crashed_channel_is_restarted_and_shown_as_disconnected_meanwhile(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.control_channel import ControlChannel

    real_run = ControlChannel.run
    crashes = 0

    async def crash_once(self: ControlChannel) -> None:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise OSError(24, "Too many open files")
        await real_run(self)

    monkeypatch.setattr(ControlChannel, "run", crash_once)
    async with daemon_running(tmp_path, run_dir) as (daemon, cloud, clock, url):
        await eventually(lambda: len(cloud.polls) == 1)
        await daemon.commands.control("token_set", {"token": sealed_for(url)})
        await eventually(lambda: daemon.state is DeviceState.DISCONNECTED, what="disconnected")
        # Holding a token, nothing else sleeps: the next wake-up is the restart.
        crashed_at = clock.now
        assert await clock.skip_to_next_wake() - crashed_at == pytest.approx(clock.slept[-1])
        assert 0.5 <= clock.slept[-1] <= 1.0  # the first backoff window: 1 s, upper half
        await eventually(lambda: daemon.state is DeviceState.CONNECTED, what="reconnected")
        assert crashes == 1
        assert cloud.channels == [token_for(url)]


async def test_a_token_the_disk_refused_is_saved_once_the_disk_is_back(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.errors import StateError

    async with daemon_running(tmp_path, run_dir) as (daemon, cloud, clock, url):
        await eventually(lambda: len(cloud.polls) == 1)
        store = daemon.keeper.store
        real_update = store.update

        def refuse(change: object) -> object:
            raise StateError("cannot open the state lock: Too many open files")

        monkeypatch.setattr(store, "update", refuse)
        with pytest.raises(StateError, match="could not be saved"):
            await daemon.commands.control("token_set", {"token": sealed_for(url)})
        await eventually(lambda: daemon.state is DeviceState.CONNECTED, what="connected")
        assert TokenStore(daemon.config.state_dir).load().token == ""
        retried = await clock.skip_to_next_wake()  # a retry while the disk still refuses
        await eventually(lambda: (clock.next_wake() or 0) > retried, what="the next retry")
        assert clock.next_wake() == retried + 5.0
        assert TokenStore(daemon.config.state_dir).load().token == ""
        monkeypatch.setattr(store, "update", real_update)
        await clock.skip_to_next_wake()
        await eventually(lambda: daemon.keeper.unsaved is None, what="saved")
        assert TokenStore(daemon.config.state_dir).load().token == token_for(url)
        assert clock.next_wake() is None  # nothing left to retry
