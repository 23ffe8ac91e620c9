"""The daemon's QR watcher: what it hands to the daemon, and what it only logs."""

from __future__ import annotations

import asyncio
import json

from agent.config import QrConfig
from agent.qr.payloads import Label, Payload, label_payload
from agent.qr.watcher import QrWatcher

TOKEN = "eyJhbGciOiJFZERTQSJ9." + "A" * 86


def _handled(texts: list[str]) -> list[Payload]:
    got: list[Payload] = []

    async def on_payload(payload: Payload) -> None:
        got.append(payload)

    async def main() -> None:
        watcher = QrWatcher(QrConfig(source="/dev/null"), on_payload)
        for text in texts:
            await watcher._handle(json.dumps({"text": text}).encode())

    asyncio.run(main())
    return got


def test_labels_urls_and_text_are_never_applied_cards_are():
    label = label_payload(Label("00:11:22:33:44:55", "UH4YH-BEMUV-THWDS"))
    wifi = "WIFI:T:WPA;S:net;P:password1;;"
    got = _handled([label, "https://example.com/", "hello", wifi, f"CAMAGENT:T:{TOKEN};;"])
    assert [p.type for p in got] == ["wifi", "token"]
