"""QR decoding on tests/data/qr-bench: reads, misreads, false positives, time per frame.

Decoders compared (all on the grayscale image as OpenCV loads it):
- `zxing-cpp`: one plain `zxingcpp.read_barcodes` call, QR formats, plain text mode,
  otherwise library defaults;
- `pyzbar`: one plain `pyzbar.decode` call, QR only;
- `pipeline`: `agent.qr.decode.decode_frame` as the agent runs it (zxing-cpp passes; the
  expensive ones only when a code was located but not read);
- `pipeline+pyzbar`: the same with the pyzbar fallback switched on.

A read is correct when one decoded text equals the expected text once trailing CR/LF is
stripped from both; a misread is a code-bearing image whose reads are all different; a
false positive is any read on one of the no-code photos. Targets are checked against the
`pipeline` (what ships).

One expected text is wrong (ERRATA): the code in qrcode-2/13.png holds "…aerial
photography of…" while the manifest (copied from ZXing's 13.txt) says "photograph". Two
independent decoders, each checking the code's Reed-Solomon error correction, read the
same text, and ZXing's own test expects only 30 of the set's 31 images to pass. A read of
the text the code really holds is reported in its own column, `erratum`, never as a
correct read: the read count stays strict, and the misread target is checked with it
set apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import ROOT, BenchmarkError, Context, Extra, Row, median, percentile

BENCH = ROOT / "tests" / "data" / "qr-bench"
NO_CODE_SET = "falsepositives-2"
TARGET_READ = 88
TARGET_1080P_MS = 10.0
TARGET_720P_MS = 4.0
ERRATA = {
    "qrcode-2/13.png": (
        "The 2005 USGS aerial photography of the Washington Monument is censored.",
        "the manifest says 'photograph'; the code holds 'photography' (zxing-cpp and zbar agree)",
    ),
}


def _decoders() -> dict[str, Callable[[Any], list[str]]]:
    import zxingcpp
    from pyzbar import pyzbar

    from agent.qr.decode import decode_frame

    formats = zxingcpp.barcode_formats_from_str("QRCode,MicroQRCode")

    def zxing_plain(image: Any) -> list[str]:
        found = zxingcpp.read_barcodes(image, formats=formats, text_mode=zxingcpp.TextMode.Plain)
        return [r.text for r in found]

    def pyzbar_plain(image: Any) -> list[str]:
        found = pyzbar.decode(image, symbols=[pyzbar.ZBarSymbol.QRCODE])
        return [s.data.decode("utf-8", "replace") for s in found]

    return {
        "zxing-cpp": zxing_plain,
        "pyzbar": pyzbar_plain,
        "pipeline": lambda image: [d.text for d in decode_frame(image)],
        "pipeline+pyzbar": lambda image: [d.text for d in decode_frame(image, use_pyzbar=True)],
    }


def _load() -> list[tuple[str, str, str | None, Any]]:
    import cv2

    manifest = BENCH / "manifest.tsv"
    if not manifest.is_file():
        raise BenchmarkError(f"QR benchmark data not found: {manifest}")
    items = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[1:]:
        name, expected, set_name = line.split("\t")
        image = cv2.imread(str(BENCH / name), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise BenchmarkError(f"cannot read {BENCH / name}")
        items.append((name, set_name, json.loads(expected), image))
    return items


def _timed(decode: Callable[[Any], list[str]], image: Any, repeat: int) -> tuple[list[str], float]:
    """The texts read and the best of `repeat` timings in ms (after one warm-up call)."""
    texts = decode(image)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        decode(image)
        best = min(best, (time.perf_counter() - start) * 1000)
    return texts, best


def _score(
    decode: Callable[[Any], list[str]], items: list[tuple[str, str, str | None, Any]], repeat: int
) -> dict[str, Any]:
    sets: dict[str, dict[str, int]] = {}
    times: list[float] = []
    wrong: list[dict[str, Any]] = []
    for name, set_name, expected, image in items:
        texts, ms = _timed(decode, image, repeat)
        times.append(ms)
        tally = sets.setdefault(
            set_name, {"images": 0, "read": 0, "misread": 0, "erratum": 0, "fp": 0}
        )
        tally["images"] += 1
        stripped = [t.rstrip("\r\n") for t in texts]
        if expected is None:
            if texts:
                tally["fp"] += 1
                wrong.append({"file": name, "kind": "false positive", "read": stripped})
        elif expected.rstrip("\r\n") in stripped:
            tally["read"] += 1
        elif name in ERRATA and ERRATA[name][0] in stripped:
            tally["erratum"] += 1
            wrong.append(
                {"file": name, "kind": "erratum", "read": stripped, "why": ERRATA[name][1]}
            )
        elif texts:
            tally["misread"] += 1
            wrong.append({"file": name, "kind": "misread", "read": stripped})
        else:
            wrong.append({"file": name, "kind": "not read"})
    total = {
        k: sum(s[k] for s in sets.values()) for k in ("images", "read", "misread", "erratum", "fp")
    }
    return {
        "sets": sets,
        "total": total,
        "median_ms": median(times),
        "p95_ms": percentile(times, 95),
        "wrong": wrong,
    }


def _nocode_frames(items: list[tuple[str, str, str | None, Any]]) -> dict[str, list[Any]]:
    import cv2
    import numpy as np

    photos = [image for _n, _s, expected, image in items if expected is None]
    rng = np.random.default_rng(1)
    frames: dict[str, list[Any]] = {}
    for label, size in (("1080p", (1920, 1080)), ("720p", (1280, 720))):
        frames[f"{label} photo"] = [
            cv2.resize(p, size, interpolation=cv2.INTER_CUBIC) for p in photos
        ]
        frames[f"{label} blank"] = [np.full((size[1], size[0]), 128, np.uint8)]
        frames[f"{label} noise"] = [rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)]
    return frames


def _frame_ms(decode: Callable[[Any], list[str]], frames: list[Any], repeat: int) -> float:
    return median([_timed(decode, frame, repeat)[1] for frame in frames])


def qr_decode(ctx: Context) -> list[Row]:
    repeat = 1 if ctx.quick else 5
    items = _load()
    decoders = _decoders()
    scores = {label: _score(decode, items, repeat) for label, decode in decoders.items()}
    nocode = _nocode_frames(items)
    frame_ms = {
        label: {kind: _frame_ms(decode, frames, repeat) for kind, frames in nocode.items()}
        for label, decode in decoders.items()
    }

    set_names = sorted(scores["pipeline"]["sets"])
    no_code_images = sum(1 for _n, _s, expected, _i in items if expected is None)
    table: list[list[str]] = []
    for label, score in scores.items():
        for set_name in [*set_names, "total"]:
            t = score["total"] if set_name == "total" else score["sets"][set_name]
            code_images = t["images"] - (
                no_code_images if set_name in (NO_CODE_SET, "total") else 0
            )
            table.append(
                [
                    label,
                    set_name,
                    f"{t['read']}/{code_images}" if code_images else "-",
                    str(t["misread"]),
                    str(t["erratum"]),
                    str(t["fp"]),
                    f"{score['median_ms']:.2f}" if set_name == "total" else "",
                    f"{score['p95_ms']:.2f}" if set_name == "total" else "",
                ]
            )
    ctx.extras.append(
        Extra(
            "QR decoding on tests/data/qr-bench (read = correct reads / images with a code; "
            "ms per image, best of runs)",
            ("decoder", "set", "read", "misreads", "erratum", "false pos.", "median ms", "p95 ms"),
            table,
            [{"decoder": k, **v} for k, v in scores.items()],
        )
    )
    kinds = list(nocode)
    ctx.extras.append(
        Extra(
            "QR decoding: ms per frame without a code (photo = the 25 no-code photos resized, "
            "median)",
            ("decoder", *kinds),
            [[label, *(f"{frame_ms[label][k]:.2f}" for k in kinds)] for label in decoders],
            [{"decoder": label, **frame_ms[label]} for label in decoders],
        )
    )

    ship = scores["pipeline"]
    total = ship["total"]
    code_images = total["images"] - no_code_images
    how = f"{len(items)} photos of tests/data/qr-bench, agent.qr.decode.decode_frame (pyzbar off)"
    ms_1080 = frame_ms["pipeline"]["1080p photo"]
    ms_720 = frame_ms["pipeline"]["720p photo"]
    details: dict[str, Any] = {"wrong": ship["wrong"], "all_decoders": scores}
    return [
        Row(
            "qr_decode_read",
            total["read"],
            "images",
            f"{total['read']} of {code_images} read",
            f">= {TARGET_READ} of {code_images}",
            total["read"] >= TARGET_READ,
            how,
            details,
        ),
        Row(
            "qr_decode_misreads",
            total["misread"],
            "images",
            str(total["misread"])
            + (
                f" (+{total['erratum']} read as the code holds, not as the manifest's typo)"
                if total["erratum"]
                else ""
            ),
            "0",
            total["misread"] == 0,
            how + "; see ERRATA in benchmarks/qr_bench.py",
        ),
        Row(
            "qr_decode_false_positives",
            total["fp"],
            "images",
            f"{total['fp']} of {no_code_images}",
            "0",
            total["fp"] == 0,
            how,
        ),
        Row(
            "qr_decode_image_ms",
            round(ship["median_ms"], 2),
            "ms",
            f"median {ship['median_ms']:.2f} ms, p95 {ship['p95_ms']:.2f} ms",
            "",
            None,
            how + f"; best of {repeat} per image",
        ),
        Row(
            "qr_decode_1080p_nocode_ms",
            round(ms_1080, 2),
            "ms",
            f"{ms_1080:.2f} ms (blank {frame_ms['pipeline']['1080p blank']:.2f}, "
            f"noise {frame_ms['pipeline']['1080p noise']:.2f})",
            f"<= {TARGET_1080P_MS:.0f} ms",
            ms_1080 <= TARGET_1080P_MS,
            "no-code photos resized to 1920x1080, median",
        ),
        Row(
            "qr_decode_720p_nocode_ms",
            round(ms_720, 2),
            "ms",
            f"{ms_720:.2f} ms (blank {frame_ms['pipeline']['720p blank']:.2f}, "
            f"noise {frame_ms['pipeline']['720p noise']:.2f})",
            f"<= {TARGET_720P_MS:.0f} ms",
            ms_720 <= TARGET_720P_MS,
            "no-code photos resized to 1280x720, median",
        ),
    ]


def main() -> None:  # pragma: no cover - a quick look without the suite
    ctx = Context(quick=False, log=print)
    try:
        for row in qr_decode(ctx):
            print(row.name, row.display, row.target, row.mark)
        for extra in ctx.extras:
            print(extra.title)
            for line in extra.rows:
                print("  ", *line)
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
