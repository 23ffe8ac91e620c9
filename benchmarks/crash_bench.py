"""crash_bench: SIGKILL at random moments during every kind of state write.

Kinds of write (each a real process killed with SIGKILL at a random moment of the write):
- `cli_offline`: `camagent token set` with no daemon (the CLI writes under the lock);
- `cli_daemon`: `token_set` through the control socket of a running daemon (what
  `camagent token set` sends), the daemon killed while it saves;
- `lan_push`: `POST /v1/token` on the daemon's local API (Digest auth, the certificate
  pinned by its fingerprint, as `camagent finder push` does), the daemon killed meanwhile;
- `poll`: the camera is added in the mock while the daemon holds a long-poll; the
  daemon killed while it unseals, verifies and saves the token;
- `reload`: SIGHUP with a changed agent.toml, a token set at the same moment, then
  SIGKILL (a reload itself writes no state; it must not disturb a write either);
- `store_loop`: a process replacing the token in a tight loop (TokenStore.update),
  killed at a random moment: most kills land inside write_atomic itself.
When to kill: uniformly over the write's measured duration at first, then following the
outcomes so that kills keep landing around the commit point (KillWindow).
After every kill the state file must read back (TokenStore.load) holding the old token or
the new one, never anything else; daemons killed must start again (answer on their socket).

A camera takes a token from outside its poll only sealed under its K (docs/design.md
§2.9): the CLI, control-socket and LAN writes send `Device.seal(token)`; the state holds
the token itself, which is what the verdict compares.

The devices trust a signing key made here, and (except `poll`) point at a cloud URL where
nothing listens: their channel just retries, so no cloud answer changes the state under
the test. `poll` uses a real mock cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from agent import control_socket
from agent.errors import CamagentError
from agent.provisioning.wire import derive_key, seal_token
from agent.token_codec import sign_token
from agent.token_store import STATE_FILE, DeviceRecord, TokenStore
from benchmarks.common import BenchmarkError, Context, Row, child_env
from cloud_mock import sandbox

ITERATIONS = 1000
QUICK_ITERATIONS = 100
# Share of the iterations per kind: daemon kinds cost a daemon start each.
SHARES = {
    "cli_offline": 0.2,
    "cli_daemon": 0.15,
    "lan_push": 0.15,
    "poll": 0.15,
    "reload": 0.15,
    "store_loop": 0.2,
}
KINDS = tuple(SHARES)
DEAD_CLOUD = "https://127.0.0.1:1"  # nothing listens: channels retry, no answer changes state
READY_TIMEOUT_S = 30.0
CALIBRATION_RUNS = 3


class Outcome(enum.Enum):
    OLD = "old"
    NEW = "new"
    CORRUPT = "corrupt"


@dataclass
class Tally:
    kind: str
    iterations: int = 0
    old: int = 0
    new: int = 0
    corrupt: int = 0
    restarts: int = 0  # daemons started again after a kill (each must answer)
    leftover_tmp: int = 0  # temp files a killed write left in the state directory
    problems: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome, detail: str = "") -> None:
        self.iterations += 1
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)
        if outcome is Outcome.CORRUPT:
            self.problems.append(detail)

    def to_json(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "old": self.old,
            "new": self.new,
            "corrupt": self.corrupt,
            "restarts": self.restarts,
            "leftover_tmp": self.leftover_tmp,
            "problems": self.problems[:10],
        }


# -- a device on disk --------------------------------------------------------------------


@dataclass
class Device:
    """A device directory: agent.toml, password, state; tokens signed by `signing_key`."""

    root: Path
    device_id: str
    cloud_url: str
    sign: Callable[[dict[str, Any]], str]
    trust_key_file: Path
    ca_file: str = ""
    fast_interval: float = 2.0
    long_poll: float = 1.0
    password: str = "crash-password"
    local_api: bool = False  # on 127.0.0.1, any free port, no mDNS
    _jti: int = 0
    _key: bytes = b""  # K of `password`, derived on first use

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "control.sock"

    def write_config(self, fast_interval: float | None = None) -> None:
        if fast_interval is not None:
            self.fast_interval = fast_interval
        self.root.mkdir(parents=True, exist_ok=True)
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        text = f"""[device]
id = "{self.device_id}"
password_file = "{password_file}"

[cloud]
url = "{self.cloud_url}"
ca_file = "{self.ca_file}"
trust_keys = ["{self.trust_key_file}"]

[provisioning]
fast_interval = {self.fast_interval}
fast_attempts = 1000
slow_interval = 30.0
long_poll = {self.long_poll}

[paths]
state_dir = "{self.state_dir}"
run_dir = "{self.root / "run"}"

[local_api]
enabled = {"true" if self.local_api else "false"}
listen = "127.0.0.1"
port = 0
mdns = false
"""
        # Replaced whole, as a careful editor (or a config manager) writes it.
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def mint(self) -> str:
        self._jti += 1
        payload = {
            "v": 1,
            "sub": self.device_id,
            "kind": "camera",
            "org": "crash",
            "api": self.cloud_url,
            "iat": int(time.time()),
            "jti": f"crash-{self._jti}-{random.getrandbits(32):08x}",
        }
        return self.sign(payload)

    def seal(self, token: str) -> str:
        """`token` as a camera takes it outside its poll: sealed under its K."""
        if not self._key:
            self._key = derive_key(self.password, self.device_id)
        return seal_token(self._key, self.device_id, token)

    def store(self) -> TokenStore:
        return TokenStore(self.state_dir)

    def set_token_directly(self, token: str) -> None:
        def change(record: DeviceRecord) -> DeviceRecord:
            base = record if record.device_id == self.device_id else DeviceRecord(self.device_id)
            if not token:
                return base.without_token()
            # Past the agent's gate on purpose (`with_token` takes only a VerifiedToken):
            # what is measured is the file's crash safety, not the token's checks.
            return replace(
                base,
                token=token,
                token_source="crash_bench",
                token_saved_at=time.time(),
                activation=None,
            )

        self.store().update(change)

    def classify(self, old: str, new: str) -> tuple[Outcome, str]:
        """What the state reads back as after a kill: the old token, the new one, or junk."""
        try:
            record = self.store().load()
        except CamagentError as exc:
            return Outcome.CORRUPT, f"unreadable: {exc}"
        if record.device_id != self.device_id:
            return Outcome.CORRUPT, f"device_id {record.device_id!r}"
        if record.token == new:
            return Outcome.NEW, ""
        if record.token == old:
            return Outcome.OLD, ""
        return Outcome.CORRUPT, f"token is neither old nor new: {record.token[:20]!r}"

    def leftover_tmp(self) -> int:
        return sum(1 for p in self.state_dir.glob(f".{STATE_FILE}.*.tmp"))


def new_signer(directory: Path) -> tuple[Callable[[dict[str, Any]], str], Path]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    pub = directory / "signing.pub.pem"
    directory.mkdir(parents=True, exist_ok=True)
    pub.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return (lambda payload: sign_token(payload, key)), pub


# -- processes ---------------------------------------------------------------------------


class Daemon:
    """A `camagent run` subprocess that the harness kills and starts again."""

    def __init__(self, device: Device, **env: str) -> None:
        self.device = device
        self.env = env  # extra environment for the daemon
        self.process: subprocess.Popen[bytes] | None = None
        self.log = device.root / "agent.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "--config", str(self.device.config_path), "run"],
                stdout=log,
                stderr=log,
                env=child_env(**self.env),
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(
                    f"daemon exited with {self.process.returncode} on start; log: {self.tail()}"
                )
            if self.answers():
                return
            time.sleep(0.01)
        raise BenchmarkError(f"daemon not answering after {READY_TIMEOUT_S:.0f} s: {self.tail()}")

    def answers(self) -> bool:
        try:
            self.status()
        except CamagentError:
            return False
        return True

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = control_socket.request(self.device.socket, "status", timeout=5)
        return answer

    def local_api(self, timeout: float = 10.0) -> dict[str, Any]:
        """The local API's {port, fp} once it listens (it starts just after the socket)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            local: dict[str, Any] = self.status().get("local_api", {})
            if local.get("port"):
                return local
            time.sleep(0.02)
        raise BenchmarkError(f"no local API after {timeout:.0f} s: {self.tail()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"


def _in_thread(fn: Callable[[], Any]) -> threading.Thread:
    """Run a request that the kill may cut short; its failure is expected, not reported."""

    def quiet() -> None:
        with contextlib.suppress(CamagentError, OSError):
            fn()

    thread = threading.Thread(target=quiet, daemon=True)
    thread.start()
    return thread


def _set_token(device: Device, token: str) -> None:
    control_socket.request(device.socket, "token_set", {"token": device.seal(token)})


def _push(daemon: Daemon, token: str) -> None:
    """What `camagent finder push` does: HTTPS pinned to the fp, Digest as admin."""
    local = daemon.local_api()

    async def push() -> None:
        digest = aiohttp.DigestAuthMiddleware("admin", daemon.device.password)
        pin = aiohttp.Fingerprint(bytes.fromhex(local["fp"]))
        url = f"https://127.0.0.1:{local['port']}/v1/token"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(
                url, json={"token": daemon.device.seal(token)}, ssl=pin, middlewares=(digest,)
            ) as answer,
        ):
            if answer.status != 200:
                raise BenchmarkError(f"push: HTTP {answer.status} {await answer.text()}")

    try:
        asyncio.run(push())
    except aiohttp.ClientError as exc:  # the kill cut it short
        raise OSError(str(exc)) from None


@dataclass
class KillWindow:
    """When to kill after a write starts: uniformly in [low x span, span].

    `span` starts at the write's measured duration, then follows the outcomes like a
    staircase: the old state back means the kill came before the commit point, so the
    window grows; the new one means after it, so it shrinks. However loaded the machine
    is, the kills keep landing around the commit point, where a torn write would show.
    """

    span: float
    low: float = 0.0

    def delay(self, rng: random.Random) -> float:
        return rng.uniform(self.low * self.span, self.span)

    def follow(self, outcome: Outcome) -> None:
        if outcome is Outcome.OLD:
            self.span *= 1.2
        elif outcome is Outcome.NEW:
            self.span = max(self.span / 1.2, 0.001)


def _calibrate(run_once: Callable[[], float]) -> float:
    """The median duration of the write, measured without killing."""
    return statistics.median(run_once() for _ in range(CALIBRATION_RUNS))


# -- the kinds ---------------------------------------------------------------------------


@dataclass
class Harness:
    root: Path
    rng: random.Random
    log: Callable[[str], None] = lambda _m: None
    cloud: sandbox.Cloud | None = None  # only the poll kind needs one
    _n: int = 0

    def device(self, name: str, **options: Any) -> Device:
        self._n += 1
        sign, pub = new_signer(self.root / f"{name}-keys")
        device = Device(
            self.root / name,
            f"02:c5:00:00:{self._n // 256:02x}:{self._n % 256:02x}",
            DEAD_CLOUD,
            sign,
            pub,
            **options,
        )
        device.write_config()
        return device

    def run(self, kind: str, iterations: int) -> Tally:
        runner = {
            "cli_offline": self.cli_offline,
            "cli_daemon": self.cli_daemon,
            "lan_push": self.lan_push,
            "poll": self.poll,
            "reload": self.reload,
            "store_loop": self.store_loop,
        }[kind]
        tally = Tally(kind)
        if iterations > 0:
            runner(tally, iterations)
        return tally

    @staticmethod
    def _count(tally: Tally, window: KillWindow, verdict: tuple[Outcome, str]) -> None:
        tally.add(*verdict)
        window.follow(verdict[0])

    # `camagent token set` with no daemon: the CLI process itself is killed.
    def cli_offline(self, tally: Tally, iterations: int) -> None:
        device = self.device("cli-offline")
        device.set_token_directly(device.mint())

        # The token on standard input, sealed as the camera takes it by CLI.
        argv = [sys.executable, "-m", "agent", "--config", str(device.config_path), "token", "set"]

        def once() -> float:
            start = time.monotonic()
            sealed = (device.seal(device.mint()) + "\n").encode()
            subprocess.run(argv, input=sealed, check=True, capture_output=True, env=child_env())
            return time.monotonic() - start

        # The write is the last thing the CLI does: aim at the end of its run.
        window = KillWindow(_calibrate(once), low=0.5)
        for _ in range(iterations):
            old, new = device.store().load().token, device.mint()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=child_env(),
            )
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write((device.seal(new) + "\n").encode())
                process.stdin.close()
            time.sleep(window.delay(self.rng))
            process.send_signal(signal.SIGKILL)
            process.wait()
            self._count(tally, window, device.classify(old, new))
        tally.leftover_tmp += device.leftover_tmp()
        daemon = Daemon(device)  # and a daemon starts on what the kills left
        daemon.start()
        tally.restarts += 1
        daemon.stop()

    # `camagent token set` with the daemon running: the daemon is killed while it saves.
    def cli_daemon(self, tally: Tally, iterations: int) -> None:
        self._kill_daemon_while_it_saves(
            tally, iterations, self.device("cli-daemon"), lambda d, t: _set_token(d.device, t)
        )

    # POST /v1/token on the local API (Digest auth, certificate pinned by its fingerprint).
    def lan_push(self, tally: Tally, iterations: int) -> None:
        self._kill_daemon_while_it_saves(
            tally,
            iterations,
            self.device("lan-push", local_api=True),
            _push,
            # Listening (it starts just after the control socket) before the kill is timed.
            before_each=Daemon.local_api,
        )

    def _kill_daemon_while_it_saves(
        self,
        tally: Tally,
        iterations: int,
        device: Device,
        write: Callable[[Daemon, str], None],
        before_each: Callable[[Daemon], object] = lambda _daemon: None,
    ) -> None:
        """A running daemon is asked to save a new token by `write`, and killed meanwhile."""
        device.set_token_directly(device.mint())
        daemon = Daemon(device)
        daemon.start()
        try:

            def once() -> float:
                start = time.monotonic()
                write(daemon, device.mint())
                return time.monotonic() - start

            window = KillWindow(_calibrate(once))
            for _ in range(iterations):
                old, new = device.store().load().token, device.mint()
                before_each(daemon)
                _in_thread(functools.partial(write, daemon, new))
                time.sleep(window.delay(self.rng))
                daemon.kill()
                self._count(tally, window, device.classify(old, new))
                daemon.start()
                tally.restarts += 1
        finally:
            tally.leftover_tmp += device.leftover_tmp()
            daemon.stop()

    # SIGHUP with a changed file and a token set together, then SIGKILL.
    def reload(self, tally: Tally, iterations: int) -> None:
        device = self.device("reload")
        device.set_token_directly(device.mint())
        daemon = Daemon(device)
        daemon.start()
        try:
            window = KillWindow(0.0)
            for i in range(iterations + CALIBRATION_RUNS):
                calibrating = i < CALIBRATION_RUNS
                old, new = device.store().load().token, device.mint()
                device.write_config(fast_interval=2.0 + (i % 2))
                assert daemon.process is not None
                start = time.monotonic()
                daemon.process.send_signal(signal.SIGHUP)
                request = _in_thread(functools.partial(_set_token, device, new))
                if calibrating:
                    request.join()
                    window.span = max(window.span, time.monotonic() - start)
                    continue
                time.sleep(window.delay(self.rng))
                daemon.kill()
                self._count(tally, window, device.classify(old, new))
                daemon.start()
                tally.restarts += 1
        finally:
            tally.leftover_tmp += device.leftover_tmp()
            daemon.stop()

    # A token from a poll: the camera is added while the daemon holds a long-poll.
    def poll(self, tally: Tally, iterations: int) -> None:
        if self.cloud is None:
            raise BenchmarkError("the poll kind needs a mock cloud")
        cloud = self.cloud
        session = cloud.login()
        device = self.device("poll", ca_file=str(cloud.ca_file), fast_interval=3.0, long_poll=2.5)
        device.cloud_url, device.trust_key_file = cloud.url, cloud.signing_key_file
        device.write_config()
        daemon = Daemon(device)
        daemon.start()
        try:
            window = KillWindow(0.0)
            for i in range(iterations + CALIBRATION_RUNS):
                calibrating = i < CALIBRATION_RUNS
                _wait_for_held_poll(daemon)
                start = time.monotonic()
                added = cloud.add_camera(session, device.device_id, device.password, "crash")
                new = str(added["token"])
                if calibrating:
                    _wait_for_token(daemon)
                    window.span = max(window.span, time.monotonic() - start)
                else:
                    time.sleep(window.delay(self.rng))
                daemon.kill()
                if not calibrating:
                    self._count(tally, window, device.classify("", new))
                cloud.delete_camera(session, str(added["camera_id"]))
                device.set_token_directly("")  # back to provisioning for the next round
                daemon.start()
                tally.restarts += not calibrating
        finally:
            tally.leftover_tmp += device.leftover_tmp()
            daemon.stop()

    # TokenStore.update in a tight loop: kills land inside write_atomic.
    def store_loop(self, tally: Tally, iterations: int) -> None:
        device = self.device("store-loop")
        a, b = device.mint(), device.mint()
        device.set_token_directly(a)
        code = (
            "import sys\n"
            "from dataclasses import replace\n"
            "from pathlib import Path\n"
            "from agent.token_store import TokenStore\n"
            "store, tokens = TokenStore(Path(sys.argv[1])), sys.argv[2:4]\n"
            "print('ready', flush=True)\n"
            "i = 0\n"
            "while True:\n"
            "    i += 1\n"
            "    store.update(lambda r: replace(r, token=tokens[i % 2], token_source='loop'))\n"
        )
        for _ in range(iterations):
            process = subprocess.Popen(
                [sys.executable, "-c", code, str(device.state_dir), a, b],
                stdout=subprocess.PIPE,
                env=child_env(),
            )
            assert process.stdout is not None
            process.stdout.readline()  # imported and looping from here on
            time.sleep(self.rng.uniform(0.0, 0.05))
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stdout.close()
            tally.add(*device.classify(a, b))
        tally.leftover_tmp += device.leftover_tmp()


def _wait_for_held_poll(daemon: Daemon, timeout: float = 20.0) -> None:
    """Until a poll is in flight and held by the mock.

    A poll lasts `long_poll` s of the `fast_interval` between starts, so while one is held
    the next is due in more than `fast_interval - long_poll`; once it ended, in less.
    """
    device = daemon.device
    low = device.fast_interval - device.long_poll + 0.3
    high = device.fast_interval - 0.15  # begun a moment ago: the mock holds it by now
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prov = daemon.status()["provisioning"]
        next_in = prov.get("next_poll_in")
        if prov.get("attempts", 0) >= 1 and next_in is not None and low < next_in < high:
            return
        time.sleep(0.02)
    raise BenchmarkError(f"the daemon never held a poll: {daemon.tail()}")


def _wait_for_token(daemon: Daemon, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.status()["token"].get("present"):
            return
        time.sleep(0.005)
    raise BenchmarkError("the polled token never arrived")


def split(iterations: int) -> dict[str, int]:
    counts = {kind: int(iterations * share) for kind, share in SHARES.items()}
    counts[KINDS[0]] += iterations - sum(counts.values())
    return counts


def run_all(harness: Harness, counts: dict[str, int]) -> list[Tally]:
    tallies = []
    for kind, n in counts.items():
        started = time.monotonic()
        tally = harness.run(kind, n)
        harness.log(
            f"crash_bench {kind}: {tally.iterations} kills, old {tally.old}, new {tally.new}, "
            f"corrupt {tally.corrupt} ({time.monotonic() - started:.0f} s)"
        )
        tallies.append(tally)
    return tallies


def crash_bench(ctx: Context) -> list[Row]:
    iterations = QUICK_ITERATIONS if ctx.quick else ITERATIONS
    harness = Harness(ctx.new_dir("crash"), random.Random(), ctx.log, ctx.shared_cloud())
    tallies = run_all(harness, split(iterations))
    total = sum(t.iterations for t in tallies)
    corrupt = sum(t.corrupt for t in tallies)
    old, new = sum(t.old for t in tallies), sum(t.new for t in tallies)
    leftovers = sum(t.leftover_tmp for t in tallies)
    per_kind = ", ".join(f"{t.kind} {t.old}/{t.new}" for t in tallies)
    return [
        Row(
            "crash_bench",
            float(corrupt),
            "corrupt",
            f"{total} kills, corrupt {corrupt}, old {old}, new {new} ({per_kind}); "
            f"{sum(t.restarts for t in tallies)} restarts; {leftovers} stale tmp",
            "corrupt = 0",
            corrupt == 0 and total == iterations,
            "SIGKILL mid-write, TokenStore.load",
            details={t.kind: t.to_json() for t in tallies},
        )
    ]
