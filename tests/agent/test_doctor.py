"""`camagent doctor`: the hint that fixes each failure, warnings counted, commands in hints
that work with the --config given, and the daemon's no-token hint."""

from __future__ import annotations

import contextlib
import re
import shlex
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import doctor, hints
from agent.checks import Check, format_results
from agent.cli import format_status


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "password").write_text("label password\n")
    path = tmp_path / "my agent.toml"
    path.write_text(
        f'[device]\nid = "cam-1"\npassword_file = "{tmp_path / "password"}"\n'
        '[cloud]\nurl = "https://127.0.0.1:9"\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\nrun_dir = "{tmp_path / "run"}"\n'
    )
    return path


def by_name(results: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in results}


def test_hints_carry_the_config_that_was_given(config_path: Path) -> None:
    checks = by_name(doctor.run_checks(config_path))
    assert checks["daemon"].status == "warn"
    start = shlex.join([*hints.program(), "--config", str(config_path), "run"])
    assert checks["daemon"].fix == f"start it: {start}"
    assert "systemctl" not in checks["daemon"].fix
    assert checks["tls"].status == "fail"
    assert "cannot reach 127.0.0.1:9" in checks["tls"].detail
    broken = config_path.with_name("broken.toml")
    broken.write_text("[nope]\n")
    (only,) = doctor.run_checks(broken)
    again = shlex.join([*hints.program(), "--config", str(broken), "doctor"])
    assert only.fix == f"fix {broken}, then run `{again}` again"


def test_the_default_config_keeps_the_systemd_hint() -> None:
    from agent.config import DEFAULT_CONFIG_PATH

    assert doctor.camagent_command(Path(DEFAULT_CONFIG_PATH), "run") == shlex.join(
        [*hints.program(), "run"]
    )


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p, "no such file"),  # never created
        (lambda p: p.mkdir() or p, "Is a directory"),
    ],
)
def test_an_unreadable_ca_file_says_so(
    config_path: Path, make: Callable[[Path], Path], words: str
) -> None:
    ca = make(config_path.parent / "ca.pem")
    config_path.write_text(
        config_path.read_text().replace(
            'url = "https://127.0.0.1:9"', f'url = "https://127.0.0.1:9"\nca_file = "{ca}"'
        )
    )
    tls = by_name(doctor.run_checks(config_path))["tls"]
    assert tls.status == "fail"
    assert tls.detail.startswith(f"cannot read ca_file {ca}: ")
    assert words in tls.detail
    assert "firewall" not in tls.fix
    assert str(config_path) in tls.fix


def test_a_damaged_state_file_is_the_only_case_for_reset(config_path: Path) -> None:
    state = config_path.parent / "state"
    state.mkdir()
    (state / "state.bin").write_bytes(b"garbage")
    check = by_name(doctor.run_checks(config_path))["state"]
    assert check.status == "fail"
    assert "reset" in check.fix
    assert shlex.join([*hints.program(), "--config", str(config_path), "reset"]) in check.fix


def test_warnings_are_counted_never_all_passed() -> None:
    text = format_results([Check("a", "ok", "fine"), Check("b", "warn", "hmm", "do x")])
    assert text.splitlines()[-1] == "1 warning."
    assert "All checks passed" not in text
    text = format_results(
        [Check("a", "fail", "bad"), Check("b", "warn", "hmm"), Check("c", "warn", "hmm")]
    )
    assert text.splitlines()[-1] == "1 check(s) failed, 2 warnings."
    assert format_results([Check("a", "ok", "fine")]).splitlines()[-1] == "All checks passed."


STATUS: dict[str, Any] = {
    "device_id": "cam-1",
    "kind": "camera",
    "name": "",
    "state": "provisioning",
    "token": {"present": False},
    "provisioning": {
        "attempts": 0,
        "phase": "slow",
        "next_poll_in": 50.0,
        "last_attempt": 31,
        "last_result": "no token yet",
        "last_at": 1_700_000_000.0,
    },
    "cloud": {"url": "https://cloud.test", "connected_since": None},
    "version": "9",
    "daemon": True,
}


def test_the_no_token_hint_from_the_daemon_or_worked_out() -> None:
    told = {**STATUS, "provisioning": {**STATUS["provisioning"], "hint": "the daemon's words"}}
    assert doctor.no_token_hint(told) == "the daemon's words"
    worked_out = doctor.no_token_hint(STATUS)
    assert worked_out is not None
    assert worked_out.startswith("no token after 31 polls: if the camera was added")
    assert "password_file holds the label password" in worked_out
    assert "hint          no token after 31 polls" in format_status(STATUS)
    fast = {**STATUS, "provisioning": {**STATUS["provisioning"], "phase": "fast"}}
    unreachable = {
        **STATUS,
        "provisioning": {**STATUS["provisioning"], "last_result": "network error: refused"},
    }
    daemon_says_none = {**STATUS, "provisioning": {**STATUS["provisioning"], "hint": None}}
    for status in (fast, unreachable, daemon_says_none):
        assert doctor.no_token_hint(status) is None
        assert "hint" not in format_status(status)


H264_SDP = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framesize:96 640-360\r\n"
H265_SDP = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n"


@contextlib.contextmanager
def rtsp_server(sdp: str) -> Iterator[int]:
    """An RTSP server on 127.0.0.1 answering every DESCRIBE with `sdp`; yields its port.
    Threaded, because doctor runs its own event loop."""

    class Describe(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                if not (line := self.rfile.readline()):
                    return
                head += line
            cseq = re.search(rb"CSeq: (\d+)", head)
            assert cseq is not None
            self.wfile.write(
                b"RTSP/1.0 200 OK\r\nCSeq: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (cseq.group(1), len(sdp), sdp.encode())
            )

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Describe) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join()


def closed_port() -> int:
    with socket.socket() as sock:  # nothing binds it again: the refusal is the subject
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def video_checks(config_path: Path, extra: str) -> list[Check]:
    config_path.write_text(config_path.read_text() + extra)
    return [c for c in doctor.run_checks(config_path) if c.name == "video"]


def test_no_video_is_fine(config_path: Path) -> None:
    assert video_checks(config_path, "") == [
        Check("video", "ok", "no video configured ([video] main is empty)")
    ]


def test_a_stream_in_h264_passes(config_path: Path) -> None:
    with rtsp_server(H264_SDP) as port:
        checks = video_checks(config_path, f'[video]\nmain = "rtsp://127.0.0.1:{port}/s"\n')
    assert checks == [Check("video", "ok", "main: RTSP 200, H264 640x360")]


def test_a_stream_in_h265_warns_that_browsers_cannot_play_it(config_path: Path) -> None:
    with rtsp_server(H265_SDP) as port:
        (check,) = video_checks(config_path, f'[video]\nmain = "rtsp://127.0.0.1:{port}/s"\n')
    assert check.status == "warn"
    assert check.detail == "main: RTSP 200, H265: browsers cannot play H265"
    assert "H.264" in check.fix


def test_an_unreachable_stream_names_the_key_and_the_file(config_path: Path) -> None:
    main, sub = closed_port(), closed_port()
    extra = (
        f'[video]\nmain = "rtsp://u:secret@127.0.0.1:{main}/s"\nsub = "rtsp://127.0.0.1:{sub}/s2"\n'
    )
    first, second = video_checks(config_path, extra)
    assert (first.status, first.detail) == ("fail", "main: connection refused")
    assert first.fix == (
        f"check that the camera's RTSP server answers at 127.0.0.1:{main}, "
        f"or fix video.main in {config_path}"
    )
    assert (second.status, second.detail) == ("fail", "sub: connection refused")
    assert f"fix video.sub in {config_path}" in second.fix
    assert "secret" not in format_results([first, second])


def test_an_nvr_camera_that_is_unreachable_names_its_table(config_path: Path) -> None:
    port = closed_port()
    text = config_path.read_text().replace("[device]\n", '[device]\nkind = "nvr"\n')
    config_path.write_text(text)
    with rtsp_server(H264_SDP) as good:
        checks = video_checks(
            config_path,
            f'[[nvr.cameras]]\nname = "gate"\nurl = "rtsp://127.0.0.1:{good}/main"\n'
            f'[[nvr.cameras]]\nname = "yard"\nurl = "rtsp://127.0.0.1:{good}/main"\n'
            f'sub_url = "rtsp://127.0.0.1:{port}/sub"\n',
        )
    assert [(c.status, c.detail) for c in checks] == [
        ("ok", "gate/main: RTSP 200, H264 640x360"),
        ("ok", "yard/main: RTSP 200, H264 640x360"),
        ("fail", "yard/sub: connection refused"),
    ]
    assert f"fix nvr.cameras[1].sub_url in {config_path}" in checks[2].fix


def test_the_clock_check_says_behind_ahead_or_agrees_never_minus_zero() -> None:
    from email.utils import formatdate

    from agent.checks import clock_check

    now = 1_800_000_000.0
    assert clock_check(formatdate(now, usegmt=True), now + 0.3).detail == (
        "local clock agrees with the cloud's (within 1 s)"
    )
    assert (
        clock_check(formatdate(now, usegmt=True), now - 42).detail.startswith(
            "local clock is 42 s ahead of the cloud's"
        )
        is False
    )
    assert "42 s behind the cloud's" in clock_check(formatdate(now, usegmt=True), now - 42).detail
    assert "42 s ahead of the cloud's" in clock_check(formatdate(now, usegmt=True), now + 42).detail
