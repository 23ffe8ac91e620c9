"""The RTSP probe (design §12.4): DESCRIBE against a fake server written here (every
status, Basic and Digest answered once, the SDP's codec and size, every way a server can
fail), then against a real GStreamer RTSP server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import agent
from agent.config import parse
from agent.video.rtsp_probe import StreamProbe, parse_sdp, probe, probe_all, rtsp_targets


@dataclass(frozen=True)
class Received:
    """One request the fake server read."""

    line: str
    headers: dict[str, str]  # lower-case names

    @property
    def cseq(self) -> str:
        return self.headers.get("cseq", "")


# What the fake server sends for a request; None: nothing, ever (it waits for the client
# to hang up).
Answerer = Callable[[Received], Awaitable[bytes | None]]


@dataclass
class FakeRtsp:
    port: int
    received: list[Received] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fake_rtsp(answer: Answerer, tls: ssl.SSLContext | None = None) -> AsyncIterator[FakeRtsp]:
    """A one-request-per-connection RTSP server on 127.0.0.1 at the port it was given."""
    fake = FakeRtsp(0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            line, *lines = head.strip().split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)
            }
            request = Received(line, headers)
            fake.received.append(request)
            reply = await answer(request)
            if reply is None:
                await reader.read()  # until the probe gives up and hangs up
            else:
                writer.write(reply)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the probe hung up: that is what some tests want
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def rtsp(status: str, cseq: str, headers: dict[str, str] | None = None, body: str = "") -> bytes:
    lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sdp(*media: str) -> str:
    session = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=cam", "t=0 0", "a=control:*"]
    return "\r\n".join(session + list(media)) + "\r\n"


AUDIO = "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000"
H264_SDP = sdp(AUDIO, "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framesize:96 640-360")
H265_SDP = sdp("m=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\na=x-dimensions:1920,1080")
JPEG_SDP = sdp("m=video 0 RTP/AVP 26\r\na=cliprect:0,0,480,640")


def answering(body: str) -> Answerer:
    async def answer(request: Received) -> bytes:
        return rtsp("200 OK", request.cseq, body=body)

    return answer


def sent(data: bytes | None) -> Answerer:
    async def answer(request: Received) -> bytes | None:
        return data

    return answer


@pytest.mark.parametrize(
    ("body", "codec", "detail"),
    [
        (H264_SDP, "H264", "RTSP 200, H264 640x360"),
        (H265_SDP, "H265", "RTSP 200, H265 1920x1080"),
        (JPEG_SDP, "JPEG", "RTSP 200, JPEG 640x480"),
    ],
)
async def test_a_stream_that_answers_names_its_codec_and_size(
    body: str, codec: str, detail: str
) -> None:
    async with fake_rtsp(answering(body)) as server:
        url = f"rtsp://127.0.0.1:{server.port}/stream1?channel=1"
        result = await probe("main", url)
    assert result == StreamProbe("main", True, codec, detail)
    assert result.to_json() == {
        "target": "main",
        "reachable": True,
        "codec": codec,
        "detail": detail,
    }
    (request,) = server.received
    assert request.line == f"DESCRIBE {url} RTSP/1.0"
    assert request.headers["cseq"] == "1"
    assert request.headers["accept"] == "application/sdp"
    assert request.headers["user-agent"] == f"camagent/{agent.__version__}"
    assert "authorization" not in request.headers


async def test_credentials_are_never_sent_unasked_nor_in_the_request_line() -> None:
    async with fake_rtsp(answering(H264_SDP)) as server:
        result = await probe("main", f"rtsp://admin:s3cret@127.0.0.1:{server.port}/live")
    assert result.reachable
    (request,) = server.received
    assert request.line == f"DESCRIBE rtsp://127.0.0.1:{server.port}/live RTSP/1.0"
    assert "authorization" not in request.headers


def challenging(challenges: list[str], accept: Callable[[Received], bool]) -> Answerer:
    """401 with `challenges` (one WWW-Authenticate each) until `accept` likes a request."""

    async def answer(request: Received) -> bytes:
        if "authorization" in request.headers and accept(request):
            return rtsp("200 OK", request.cseq, body=H264_SDP)
        headers = "".join(f"WWW-Authenticate: {c}\r\n" for c in challenges)
        return f"RTSP/1.0 401 Unauthorized\r\nCSeq: {request.cseq}\r\n{headers}\r\n".encode()

    return answer


async def test_basic_is_answered_with_the_decoded_credentials() -> None:
    expected = "Basic " + base64.b64encode(b"us er:p@ss:w/rd").decode()
    answer = challenging(['Basic realm="cam"'], lambda r: r.headers["authorization"] == expected)
    async with fake_rtsp(answer) as server:
        url = f"rtsp://us%20er:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}/s"
        result = await probe("sub", url)
    assert result == StreamProbe("sub", True, "H264", "RTSP 200, H264 640x360")
    first, second = server.received
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == expected
    assert second.cseq == "2"


def digest_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Digest"
    pairs = re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', rest)
    return {name: value.strip('"') for name, value in pairs}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@pytest.mark.parametrize("qop", [None, "auth", "auth,auth-int"])
async def test_digest_is_preferred_and_answered_per_rfc_2617(qop: str | None) -> None:
    user, password, realm, nonce = "admin", "p@ss", "IP Camera", "dcd98b7102dd2f0e8b11d0f600bfb0c0"
    challenge = f'Digest realm="{realm}", nonce="{nonce}", opaque="5ccc069c"'
    if qop:
        challenge += f', qop="{qop}"'

    def valid(request: Received) -> bool:
        fields = digest_params(request.headers["authorization"])
        ha1 = md5(f"{user}:{realm}:{password}")
        ha2 = md5(f"DESCRIBE:{fields['uri']}")
        if qop:
            assert (fields["qop"], fields["nc"]) == ("auth", "00000001")
            assert len(fields["cnonce"]) >= 8
            expected = md5(f"{ha1}:{nonce}:00000001:{fields['cnonce']}:auth:{ha2}")
        else:
            assert "qop" not in fields
            assert "cnonce" not in fields
            expected = md5(f"{ha1}:{nonce}:{ha2}")
        return fields["response"] == expected

    answer = challenging(['Basic realm="cam"', challenge], valid)
    async with fake_rtsp(answer) as server:
        result = await probe("main", f"rtsp://{user}:p%40ss@127.0.0.1:{server.port}/s?ch=1")
    assert result == StreamProbe("main", True, "H264", "RTSP 200, H264 640x360")
    fields = digest_params(server.received[1].headers["authorization"])
    assert fields["username"] == user
    assert fields["realm"] == realm
    assert fields["nonce"] == nonce
    assert fields["uri"] == f"rtsp://127.0.0.1:{server.port}/s?ch=1"
    assert fields["opaque"] == "5ccc069c"
    assert fields["algorithm"] == "MD5"


async def test_a_wrong_password_says_401_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    challenges = ['Digest realm="cam", nonce="abc"']
    async with fake_rtsp(challenging(challenges, lambda r: False)) as server:
        result = await probe("main", f"rtsp://admin:Hunter2-secret@127.0.0.1:{server.port}/s")
    assert result == StreamProbe("main", False, None, "RTSP 401: wrong user or password")
    assert len(server.received) == 2  # answered once, not again and again
    assert "Hunter2" not in repr(result)
    assert "Hunter2" not in caplog.text


async def test_a_401_without_credentials_in_the_url_says_where_they_go() -> None:
    async with fake_rtsp(challenging(['Basic realm="cam"'], lambda r: True)) as server:
        result = await probe("main", f"rtsp://127.0.0.1:{server.port}/s")
    assert not result.reachable
    assert result.detail.startswith("RTSP 401: the camera wants a user and password")
    assert len(server.received) == 1


async def test_a_missing_stream_names_its_path_but_not_the_query() -> None:
    async def not_found(request: Received) -> bytes:
        return rtsp("404 Stream Not Found", request.cseq)

    async with fake_rtsp(not_found) as server:
        url = f"rtsp://127.0.0.1:{server.port}/nope?user=admin&password=secret"
        result = await probe("gate/main", url)
    assert result == StreamProbe("gate/main", False, None, "RTSP 404: no stream at /nope")


@pytest.mark.parametrize(
    ("garbage", "detail"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an RTSP server"),  # no blank line ever follows
        (b"RTSP/1.0 two hundred\r\n\r\n", "not an RTSP server"),
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "not an RTSP server (an HTTP server answered: is the port right?)",
        ),
    ],
)
async def test_something_else_on_the_port_is_not_an_rtsp_server(
    garbage: bytes, detail: str
) -> None:
    async with fake_rtsp(sent(garbage)) as server:
        result = await probe("main", f"rtsp://127.0.0.1:{server.port}/s")
    assert result == StreamProbe("main", False, None, detail)


async def test_a_server_that_never_answers_times_out() -> None:
    async with fake_rtsp(sent(None)) as server:
        result = await probe("main", f"rtsp://127.0.0.1:{server.port}/s", timeout=0.3)
    assert result == StreamProbe("main", False, None, "no answer within 0.3 s")


async def test_a_server_that_hangs_up_says_so() -> None:
    async with fake_rtsp(sent(b"")) as server:
        result = await probe("main", f"rtsp://127.0.0.1:{server.port}/s")
    assert result == StreamProbe("main", False, None, "the server closed the connection")


def closed_port() -> int:
    # Nothing binds it again in this test: the refusal is what is tested.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_refused_connection_says_so() -> None:
    result = await probe("main", f"rtsp://u:p@127.0.0.1:{closed_port()}/s")
    assert result == StreamProbe("main", False, None, "connection refused")


@pytest.mark.parametrize(
    "answer",
    [
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 100000\r\n\r\n" + b"v" * 100_000,
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n" + b"X-Padding: " + b"x" * 70_000 + b"\r\n\r\n",
    ],
    ids=["body", "headers"],
)
async def test_an_answer_over_64_kib_is_refused(answer: bytes) -> None:
    async with fake_rtsp(sent(answer)) as server:
        result = await probe("main", f"rtsp://127.0.0.1:{server.port}/s")
    assert result == StreamProbe("main", False, None, "answer too large (over 64 KiB)")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/s", "rtsp:///nohost", "rtsp://127.0.0.1:99999/s"],
)
async def test_a_url_that_is_not_rtsp_is_reported_not_raised(url: str) -> None:
    result = await probe("main", url)
    assert not result.reachable
    assert "rtsp://" in result.detail


async def test_rtsps_needs_no_verifiable_certificate(tmp_path: Path) -> None:
    from cloud_mock.pki import ensure_pki

    context = ensure_pki(tmp_path, "127.0.0.1").ssl_context()  # signed by a CA nobody trusts
    async with fake_rtsp(answering(H264_SDP), tls=context) as server:
        result = await probe("main", f"rtsps://127.0.0.1:{server.port}/s")
    assert result == StreamProbe("main", True, "H264", "RTSP 200, H264 640x360")


async def test_probe_all_runs_at_once_and_keeps_the_order() -> None:
    both_asked = asyncio.Event()
    asked = 0

    async def answer_when_both_asked(request: Received) -> bytes:
        # Answers only once both probes have asked: a probe_all that ran them one after
        # the other would time out here.
        nonlocal asked
        asked += 1
        if asked == 2:
            both_asked.set()
        await both_asked.wait()
        return rtsp("200 OK", request.cseq, body=H265_SDP if "sub" in request.line else H264_SDP)

    async with fake_rtsp(answer_when_both_asked) as server:
        base = f"rtsp://127.0.0.1:{server.port}"
        results = await probe_all(
            [
                ("main", f"{base}/main"),
                ("sub", f"{base}/sub"),
                ("gone", f"rtsp://127.0.0.1:{closed_port()}/"),
            ]
        )
    assert [r.to_json() for r in results] == [
        {"target": "main", "reachable": True, "codec": "H264", "detail": "RTSP 200, H264 640x360"},
        {"target": "sub", "reachable": True, "codec": "H265", "detail": "RTSP 200, H265 1920x1080"},
        {"target": "gone", "reachable": False, "codec": None, "detail": "connection refused"},
    ]


def h264_with(sprop: str) -> str:
    fmtp = f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprop}"
    return sdp("m=video 0 RTP/AVP 96", "a=rtpmap:96 H264/90000", fmtp)


@pytest.mark.parametrize(
    ("text", "codec", "size"),
    [
        (sdp("m=video 0 RTP/AVP 96", "a=rtpmap:96 h264/90000"), "H264", None),
        (
            sdp("m=video 0 RTP/AVP 98 96", "a=rtpmap:96 H264/90000", "a=rtpmap:98 MP4V-ES/90000"),
            "MP4V-ES",
            None,
        ),
        (sdp("m=video 0 RTP/AVP 97"), None, None),
        # Sizes from the SPS in sprop-parameter-sets, as x264 writes them: Baseline with
        # emulation-prevention bytes, Main, High, High 4:4:4 (cropped by whole pixels).
        (h264_with("Z0LAH9oBQBbsBagICAoAAAMAAgAAAwBlHjBlQA==,aM48gA=="), "H264", (1280, 720)),
        (h264_with("Z01AHuygUBf8uAtQYGBqUAAAAwAQAAADA8jxYtlg,aOvssg=="), "H264", (640, 360)),
        (h264_with("Z2QAKKzZQHgCJ+XAWoCAgKAAAAMAIAAAB5HjBjLA,aOvssiw="), "H264", (1920, 1080)),
        (h264_with("Z/QAH5DZsoGwe8X4C1BgYGQAAAMABAAAAwDyPGDGWA==,aOvsRIRA"), "H264", (854, 480)),
        (h264_with("Z2QAKA==,aOvssiw="), "H264", None),  # a truncated SPS: no size, no error
        (h264_with("not base64!"), "H264", None),
    ],
)
def test_the_sdp_gives_the_first_video_payloads_codec(
    text: str, codec: str | None, size: tuple[int, int] | None
) -> None:
    video = parse_sdp(text)
    assert video is not None
    assert (video.codec, video.size) == (codec, size)


def test_an_sdp_without_video_has_none() -> None:
    assert parse_sdp(sdp(AUDIO)) is None


async def test_a_200_without_video_is_reachable_without_codec() -> None:
    async with fake_rtsp(answering(sdp(AUDIO))) as server:
        result = await probe("main", f"rtsp://127.0.0.1:{server.port}/s")
    assert result == StreamProbe("main", True, None, "RTSP 200, but the SDP has no video")


def test_rtsp_targets_of_a_camera() -> None:
    config = parse(
        '[video]\nmain = "rtsp://u:p@10.0.0.2/main"\nsub = "rtsp://10.0.0.2/sub"\n'
        'snapshot = "http://10.0.0.2/snap.jpg"\n',
        "agent.toml",
    )
    assert rtsp_targets(config) == [
        ("main", "rtsp://u:p@10.0.0.2/main"),
        ("sub", "rtsp://10.0.0.2/sub"),
    ]
    assert rtsp_targets(parse("", "agent.toml")) == []


def test_rtsp_targets_of_an_nvr() -> None:
    config = parse(
        '[device]\nkind = "nvr"\n'
        '[video]\nmain = "rtsp://ignored/main"\n'
        '[[nvr.cameras]]\nname = "gate"\nurl = "rtsp://10.0.0.5/main"\n'
        'sub_url = "rtsps://10.0.0.5/sub"\n'
        '[[nvr.cameras]]\nname = "yard"\nurl = "rtsp://10.0.0.6/main"\n',
        "agent.toml",
    )
    assert rtsp_targets(config) == [
        ("gate/main", "rtsp://10.0.0.5/main"),
        ("gate/sub", "rtsps://10.0.0.5/sub"),
        ("yard/main", "rtsp://10.0.0.6/main"),
    ]
