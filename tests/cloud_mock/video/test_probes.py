"""`probe` (docs/design.md §12.4) from the mock's side: sent on hello and every probe_s,
the newest answer kept per device and shown under `video`; a device's answer is not
trusted, and a device that does not know `probe` breaks nothing.

The device here is scripted (a WebSocket client with a real token, speaking the channel
protocol); a real daemon probing a real camera is in test_thumbnails.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_mock.server import RunningMock, start
from cloud_mock.video.probes import (
    FORGET_AFTER_S,
    MAX_DETAIL,
    MAX_STREAMS,
    PROBES,
    codec_problem,
    parse_answer,
)
from cloud_mock.video.thumbnails import THUMBNAILS
from tests.cloud_mock.conftest import mock_options
from tests.cloud_mock.helpers import add_camera
from tests.cloud_mock.nvr_helpers import call, linked_nvr
from tests.cloud_mock.video.scripted import Answer, scripted_device
from tests.eventually import eventually_async

WS = "/v1/devices/ws"
GOOD = {
    "streams": [
        {"target": "main", "reachable": True, "codec": "H264", "detail": "RTSP 200, H264 640x360"},
        {"target": "sub", "reachable": False, "codec": None, "detail": "connection refused"},
    ]
}

# --- the answer, checked ---------------------------------------------------------------


def test_a_good_answer_is_kept_as_it_is() -> None:
    streams, reason = parse_answer(GOOD, ("main", "sub", "snapshot"))
    assert reason is None
    assert [s.to_json() for s in streams or ()] == GOOD["streams"]


@pytest.mark.parametrize(
    "data", [None, "streams", 5, [], ["main"], {}, {"streams": None}, {"streams": {"a": 1}}]
)
def test_an_answer_without_a_list_of_streams_leaves_none(data: Any) -> None:
    assert parse_answer(data, ("main",)) == (
        None,
        "the device's answer to probe has no list of streams",
    )


def test_malformed_and_unknown_entries_are_left_out_and_counted() -> None:
    good = {"target": "main", "reachable": True, "codec": "H264", "detail": None}
    junk: list[Any] = [
        "main",
        None,
        {"target": 5, "reachable": True},
        {"target": "", "reachable": True},
        {"target": "x" * 200, "reachable": True},
        {"target": "ma\nin", "reachable": True},
        {"target": "10.0.0.5:554", "reachable": True},  # not a name it offered
        {"target": "sub", "reachable": "yes"},
        {"target": "sub", "reachable": True, "codec": 264},
        {"target": "sub", "reachable": True, "codec": "H 264"},
        {"target": "sub", "reachable": True, "codec": "H" * 40},
        {"target": "sub", "reachable": True, "detail": ["a"]},
        {"target": "main", "reachable": False},  # a second main
    ]
    streams, reason = parse_answer({"streams": [good, *junk]}, ("main", "sub"))
    assert [s.to_json() for s in streams or ()] == [
        {"target": "main", "reachable": True, "codec": "H264", "detail": ""}
    ]
    assert reason is not None
    assert f"left out {len(junk)} malformed or unknown entries" in reason


def test_details_are_one_short_line_without_credentials() -> None:
    detail = "401 from rtsp://admin:hunter2@10.0.0.5/stream\r\n\x1b[31mred" + "x" * 5000
    streams, _ = parse_answer(
        {"streams": [{"target": "main", "reachable": False, "detail": detail}]}, ("main",)
    )
    [probe] = streams or ()
    assert "hunter2" not in probe.detail
    assert "admin" not in probe.detail
    assert "\n" not in probe.detail
    assert "\x1b" not in probe.detail
    assert len(probe.detail) <= MAX_DETAIL
    assert probe.detail.endswith("…")


def test_an_endless_answer_is_cut() -> None:
    offered = tuple(f"cam{i}/main" for i in range(MAX_STREAMS + 50))
    entries = [{"target": target, "reachable": True} for target in offered]
    streams, reason = parse_answer({"streams": entries}, offered)
    assert len(streams or ()) == MAX_STREAMS
    assert reason is not None
    assert f"50 entries over {MAX_STREAMS}" in reason


def test_which_codecs_browsers_cannot_play() -> None:
    assert codec_problem("H264") is None
    assert codec_problem(None) is None
    assert codec_problem("h264") is None
    for hevc in ("H265", "hevc"):
        assert "H.265" in (codec_problem(hevc) or "")
    assert "MJPEG" in (codec_problem("JPEG") or "")


def probes_in(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in got if c["name"] == "probe"]


@pytest.fixture
async def mock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningMock]:
    """The in-process mock, probing every 0.3 s (thumbnails: the defaults)."""
    monkeypatch.setenv("CAMAGENT_MOCK_VIDEO_PROBE_S", "0.3")
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        yield running
    finally:
        await running.stop()


async def video_of(
    client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str
) -> dict[str, Any]:
    status, body = await call(client, "GET", f"/v1/cameras/{camera_id}", auth)
    assert status == 200, body
    assert body["status"] == "online"  # whatever the device answered
    video: dict[str, Any] = body["video"]
    return video


# --- on hello, then every probe_s -------------------------------------------------------


async def test_probed_on_hello_and_again_until_the_channel_ends(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    probes = mock.app[PROBES]
    answers: dict[str, Answer] = {"probe": lambda _: (True, GOOD)}
    async with scripted_device(
        client, camera["token"], camera["device_id"], ["main", "sub"], answers
    ) as got:
        video = await eventually_async(
            lambda: video_of(client, auth, camera["camera_id"]),
            until=lambda v: v["probe"] is not None,
            what="the hello probe",
        )
        assert video["probe"] == GOOD["streams"]
        assert video["probe_reason"] is None
        assert video["streams"] == ["main", "sub"]
        assert probes_in(got)[0]["args"] == {}
        await eventually_async(lambda: len(probes_in(got)) >= 3, what="three probes")
        assert len(probes.tasks) == 1
    await eventually_async(lambda: len(probes.tasks) == 0, what="the probe task ended")
    await eventually_async(
        lambda: len(mock.app[THUMBNAILS].tasks) == 0, what="the thumbnail task ended"
    )
    # The last answer stays (the console may show it) until the device is long offline.
    result = probes.result(camera["camera_id"])
    assert result is not None
    assert result.streams is not None
    assert probes.prune(mock.app, force=True) == 0
    mock.clock.advance(FORGET_AFTER_S + 1)
    assert probes.prune(mock.app, force=True) == 1
    assert probes.result(camera["camera_id"]) is None


async def test_a_new_connection_replaces_the_old_task(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    answers: dict[str, Answer] = {"probe": lambda _: (True, GOOD)}
    args = (client, camera["token"], camera["device_id"], ["main"], answers)
    async with scripted_device(*args) as first:
        await eventually_async(lambda: probes_in(first), what="the first channel probed")
        async with scripted_device(*args) as second:
            await eventually_async(lambda: len(probes_in(second)) >= 2, what="probes")
            assert len(mock.app[PROBES].tasks) == 1
            seen = len(probes_in(first))
            await eventually_async(lambda: len(probes_in(second)) >= 4, what="more probes")
            assert len(probes_in(first)) == seen  # the replaced channel is not asked


UNKNOWN = "the device does not know the probe command (its camagent is older)"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((False, "unknown command 'probe'"), UNKNOWN),
        ((False, {"why": "busy"}), "the device refused probe: {'why': 'busy'}"),
        ((False, "x" * 10_000), "the device refused probe: " + "x" * 299 + "…"),
        ((True, "streams"), "the device's answer to probe has no list of streams"),
        ((True, None), "the device's answer to probe has no list of streams"),
        ((True, {"streams": [1, 2, {"target": "main"}]}), "left out 3 malformed"),
        (None, "the device did not answer probe within 0.5 s"),
    ],
)
async def test_an_untrusted_answer_leaves_a_reason_and_breaks_nothing(
    mock: RunningMock,
    client: aiohttp.ClientSession,
    auth: dict[str, str],
    answer: tuple[bool, Any] | None,
    reason: str,
) -> None:
    camera = await add_camera(client, auth)
    answers: dict[str, Answer] = {"probe": lambda _: answer}
    async with scripted_device(
        client, camera["token"], camera["device_id"], ["main"], answers
    ) as got:
        video = await eventually_async(
            lambda: video_of(client, auth, camera["camera_id"]),
            until=lambda v: v["probe_reason"] is not None,
            what="a reason",
        )
        assert reason in video["probe_reason"]
        assert video["probe"] in (None, [])
        # The rest carries on: probes go on, the thumbnail has its own reason.
        await eventually_async(lambda: len(probes_in(got)) >= 2, what="the next probe")
        assert video["thumbnail"] is None
        assert video["thumbnail_reason"]
        async with client.get(
            f"/v1/cameras/{camera['camera_id']}/thumbnail", headers=auth
        ) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "no_thumbnail"


# --- NVR cameras ------------------------------------------------------------------------


async def test_an_nvr_camera_shows_its_main_stream_s_probe(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    registrator, token = await linked_nvr(client, auth)
    rid = registrator["id"]
    answers: dict[str, Answer] = {
        "probe": lambda _: (
            True,
            {
                "streams": [
                    {"target": "gate/main", "reachable": True, "codec": "H264", "detail": "ok"},
                    {"target": "gate/sub", "reachable": False, "codec": None, "detail": "timeout"},
                    {"target": "yard/main", "reachable": True, "codec": "H265", "detail": "ok"},
                ]
            },
        ),
        "sync": lambda _: (
            True,
            {
                "cameras": [
                    {"name": "gate", "url": "rtsp://10.0.0.5/main"},
                    {"name": "yard", "url": "rtsp://10.0.0.6/main"},
                    {"name": "shed", "url": "rtsp://10.0.0.7/main"},
                ]
            },
        ),
    }
    video = ["gate/main", "gate/sub", "yard/main"]
    async with scripted_device(
        client, token, registrator["device_id"], video, answers, kind="nvr"
    ) as got:
        await eventually_async(lambda: probes_in(got), what="the hello probe")
        status, body = await call(client, "POST", f"/v1/registrators/{rid}/sync", auth)
        assert status == 200, body
        body = await eventually_async(
            lambda: call(client, "GET", f"/v1/registrators/{rid}", auth),
            until=lambda answer: answer[1]["cameras"][0]["video"]["probe"] is not None,
            what="the probe under the NVR's cameras",
        )
        gate, yard, shed = (c["video"] for c in body[1]["cameras"])
        assert (gate["reachable"], gate["codec"], gate["detail"]) == (True, "H264", "ok")
        assert gate["streams"] == ["main", "sub"]
        assert [p["target"] for p in gate["probe"]] == ["main", "sub"]
        assert (yard["reachable"], yard["codec"]) == (True, "H265")
        assert "H.265" in yard["thumbnail_reason"]
        assert (shed["reachable"], shed["streams"], shed["probe"]) == (None, [], [])
        assert shed["thumbnail_reason"] == "no video configured for this camera on the NVR"
        async with client.get(
            f"/v1/registrators/{rid}/cameras/yard/thumbnail", headers=auth
        ) as response:
            assert response.status == 404
            assert "H.265" in (await response.json())["reason"]
    status, _ = await call(client, "DELETE", f"/v1/registrators/{rid}", auth)
    assert status == 204
    assert mock.app[PROBES].result(rid) is None


async def test_deleting_a_camera_forgets_its_probe_and_shutdown_stops_every_task(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    gone = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:21", name="gone")
    stays = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:22", name="stays")
    probes = mock.app[PROBES]
    good: dict[str, Answer] = {"probe": lambda _: (True, GOOD)}
    silent: dict[str, Answer] = {"probe": lambda _: None, "tunnel_open": lambda _: None}
    async with (
        scripted_device(client, gone["token"], gone["device_id"], ["main"], good),
        scripted_device(client, stays["token"], stays["device_id"], ["main"], silent) as got,
    ):
        await eventually_async(lambda: probes.result(gone["camera_id"]), what="a result")
        status, _ = await call(client, "DELETE", f"/v1/cameras/{gone['camera_id']}", auth)
        assert status == 204
        assert probes.result(gone["camera_id"]) is None
        await eventually_async(lambda: len(probes.tasks) == 1, what="its task ended")
        # The other one is being asked (and does not answer) when the mock stops.
        await eventually_async(lambda: probes_in(got), what="a probe in flight")
        await mock.stop()
        assert len(probes.tasks) == 0
        assert len(mock.app[THUMBNAILS].tasks) == 0
