"""An --add-device-cmd hook, as a cloud team would write one: adds the camera named by
DEVICE_ID and PASSWORD through the mock's user API, and notes that it ran."""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from pathlib import Path


def _post(url: str, context: ssl.SSLContext, body: dict[str, str], session: str = "") -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {session}"},
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        return json.loads(answer.read())


def main() -> None:
    cloud = os.environ["HOOK_CLOUD_URL"]
    context = ssl.create_default_context(cafile=os.environ["HOOK_CLOUD_CA"])
    password = Path(os.environ["HOOK_ADMIN_PASSWORD_FILE"]).read_text().strip()
    login = _post(f"{cloud}/v1/auth/login", context, {"login": "admin", "password": password})
    body = {"device_id": os.environ["DEVICE_ID"], "password": os.environ["PASSWORD"]}
    _post(f"{cloud}/v1/cameras", context, body, login["session"])
    with Path(os.environ["HOOK_LOG"]).open("a") as log:
        log.write(os.environ["DEVICE_ID"] + "\n")


if __name__ == "__main__":
    main()
