"""A --watch-cmd hook, as a cloud team would write one: watches the camera named by
DEVICE_ID (the mock's live view, as a logged-in user) until the kit ends it, and notes
that it ran."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import aiohttp


async def main() -> None:
    cloud = os.environ["HOOK_CLOUD_URL"]
    context = ssl.create_default_context(cafile=os.environ["HOOK_CLOUD_CA"])
    password = Path(os.environ["HOOK_ADMIN_PASSWORD_FILE"]).read_text().strip()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        login = {"login": "admin", "password": password}
        async with http.post(f"{cloud}/v1/auth/login", json=login) as answer:
            headers = {"Authorization": f"Bearer {(await answer.json())['session']}"}
        async with http.get(f"{cloud}/v1/cameras", headers=headers) as answer:
            cameras = (await answer.json())["cameras"]
        camera_id = next(
            c["camera_id"] for c in cameras if c["device_id"] == os.environ["DEVICE_ID"]
        )
        with Path(os.environ["HOOK_LOG"]).open("a") as log:
            log.write("watch " + os.environ["DEVICE_ID"] + "\n")
        async with http.ws_connect(f"{cloud}/v1/cameras/{camera_id}/live", headers=headers) as ws:
            async for _ in ws:  # a viewer only reads, until the kit ends it
                pass


if __name__ == "__main__":
    asyncio.run(main())
