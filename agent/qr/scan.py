"""`camagent qr scan [--json] [--apply] SOURCE...`: read QR codes from images, video files,
`/dev/videoN` cameras and `rtsp://` streams, in this one process for the whole batch."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.errors import CamagentError, QrPayloadError
from agent.qr.payloads import APPLICABLE, Payload, parse

if TYPE_CHECKING:
    from agent.qr.apply import Step

# A watch ends at the first card we could apply, or a camera label (what a person scans for).
WANTED = APPLICABLE | {"label"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = sub.add_parser("scan", help="read QR codes from images, videos, cameras, RTSP")
    scan.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="image or video file, /dev/videoN, or rtsp://…"
    )
    scan.add_argument("--json", action="store_true", help="one JSON line per source")
    scan.add_argument(
        "--apply", action="store_true", help="join the WiFi and/or use the token a card holds"
    )
    scan.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to watch a video, camera or stream (default 10)",
    )
    scan.add_argument(
        "--fps", type=float, default=None, help="frames a second to decode from a camera or stream"
    )


def _describe(text: str) -> tuple[dict[str, Any], Payload | None]:
    try:
        payload = parse(text)
    except QrPayloadError as exc:
        return {"text": text, "type": "text", "error": str(exc)}, None
    return payload.to_json(), payload


def scan_source(source: str, timeout: float, fps: float | None) -> dict[str, Any]:
    from agent.qr.sources import scan

    def valid(codes: list[Any]) -> bool:
        return any(_describe(code.text)[0]["type"] in WANTED for code in codes)

    try:
        decoded = scan(source, timeout=timeout, fps=fps, accept=valid)
    except CamagentError as exc:
        return {"source": source, "found": False, "payloads": [], "error": str(exc)}
    payloads = [_describe(code.text)[0] for code in decoded]
    return {"source": source, "found": bool(payloads), "payloads": payloads}


def run(args: argparse.Namespace, load_config: Callable[[], Config]) -> int:
    """Exit 0 when every source had a code (and, with --apply, every part applied)."""
    ok = True
    for source in args.sources:
        result = scan_source(source, args.timeout, args.fps)
        ok = ok and result["found"]
        if args.apply and result["found"]:
            steps = _apply_first(result, load_config)
            result["applied"] = [step.message for step in steps]
            result["steps"] = [
                {"part": step.part, "ok": step.ok, "message": step.message} for step in steps
            ]
            ok = ok and all(step.ok for step in steps)
        print(json.dumps(result) if args.json else _human(result), flush=True)
    return 0 if ok else 1


def _apply_first(result: dict[str, Any], load_config: Callable[[], Config]) -> list[Step]:
    from agent.qr.apply import Step, apply_payload

    for described in result["payloads"]:
        if described["type"] in APPLICABLE:
            payload = _describe(described["text"])[1]
            assert payload is not None
            return apply_payload(load_config(), payload)
    if any(described["type"] == "label" for described in result["payloads"]):
        why = "a camera label is read by the cloud's console, not a device"
    else:
        why = "no WiFi or token card"
    return [Step("none", True, f"nothing to apply: {why}")]


def _human(result: dict[str, Any]) -> str:
    if result.get("error"):
        return f"{result['source']}: {result['error']}"
    if not result["found"] and not result["payloads"]:
        return f"{result['source']}: no QR code found"
    lines = [f"{result['source']}:"]
    for payload in result["payloads"]:
        note = f"  ({payload['error']})" if "error" in payload else ""
        lines.append(f"  {payload['type']:<8} {payload['text']}{note}")
    for step in result.get("steps", []):
        lines.append(f"  {'→' if step['ok'] else '✗'} {step['message']}")
    return "\n".join(lines)
