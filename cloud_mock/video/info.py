"""A video source as the API and the console show it: the `video` object of a camera
(`camera_json`) and of each camera of an NVR (`registrator_json`).

Cheap on purpose: the console's live status feed builds it twice a second for every
camera of an open page. It reads memory only (the channel's hello, the probe results,
the thumbnails' state, the live hubs) and the source's recording settings row.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cloud_mock.keys import STORE
from cloud_mock.video.probes import PROBES
from cloud_mock.video.sources import VideoSource
from cloud_mock.video.thumbnails import THUMBNAILS, broadcast_allowed, thumbnail_url


def video_json(app: web.Application, source: VideoSource) -> dict[str, Any]:
    """`{streams, probe, probe_reason, thumbnail, thumbnail_reason, recording}`, and for an
    NVR camera `reachable`, `codec` and `detail` from the probe of its `main` stream.

    - streams: the names the device offers for this source ("main", "sub", "snapshot"),
      None when unknown (offline, or a device that does not say);
    - probe: `[{target, reachable, codec, detail}]` of the newest probe, target names
      without the NVR camera's prefix; None when there is no usable answer, and then
      probe_reason says why (also set when part of an answer was left out);
    - thumbnail: `{at, url}` (at: mock-clock seconds) or None, and then
      thumbnail_reason says why, for a person;
    - recording: `{mode, retention_days}`.
    """
    offered = source.offered(app)
    result = app[PROBES].result(source.peer_id)
    entries = result.of_source(source) if result is not None else None
    thumbnails = app[THUMBNAILS]
    # A picture the route would not serve (an NVR camera outside Broadcast) is not shown.
    at = thumbnails.at(source) if broadcast_allowed(app, source) else None
    body: dict[str, Any] = {
        "streams": list(offered) if offered is not None else None,
        "probe": [e.to_json(source.prefix) for e in entries] if entries is not None else None,
        "probe_reason": result.reason if result is not None else None,
        "thumbnail": {"at": at, "url": thumbnail_url(source)} if at is not None else None,
        "thumbnail_reason": thumbnails.reason(app, source) if at is None else None,
        "recording": app[STORE].video.recording(source.key).to_json(),
    }
    if source.kind == "nvr_camera":
        main = result.stream(source, "main") if result is not None else None
        body["reachable"] = main.reachable if main is not None else None
        body["codec"] = main.codec if main is not None else None
        body["detail"] = main.detail if main is not None else body["probe_reason"]
    return body
