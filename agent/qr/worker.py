"""`python -m agent.qr.worker --source S --fps F`: the child process that watches the
camera for QR cards while the daemon has no token.

OpenCV, zxing-cpp and numpy live only in this process: when it exits, their memory goes
with it and the daemon stays small. It prints one JSON line per new code seen:
`{"text": ..., "raw": base64}`; the daemon parses and applies them.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.qr.worker")
    parser.add_argument("--source", required=True)
    parser.add_argument("--fps", type=float, default=2.0)
    args = parser.parse_args(argv)

    from agent.errors import CamagentError
    from agent.qr.decode import decode_frame
    from agent.qr.sources import frames

    seen: set[bytes] = set()
    try:
        for frame in frames(args.source, fps=args.fps, timeout=None):
            for code in decode_frame(frame):
                if code.raw in seen:
                    continue  # the card stays in view for many frames: report it once
                seen.add(code.raw)
                line = {"text": code.text, "raw": base64.b64encode(code.raw).decode()}
                print(json.dumps(line), flush=True)
    except CamagentError as exc:
        print(f"camagent qr worker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
