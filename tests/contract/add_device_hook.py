"""An --add-device-cmd hook, as a cloud team would write one: adds the camera named by
DEVICE_ID and PASSWORD through the mock's user API, and notes that it ran.

With `--other-org` it is the --add-device-other-org-cmd hook: the same add, as the user
HOOK_OTHER_LOGIN of a second organization (a MAC squatter, docs/design.md §2.6)."""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Any


def _post(
    url: str, context: ssl.SSLContext, body: dict[str, str], session: str = ""
) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {session}"},
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        answered: dict[str, Any] = json.loads(answer.read())
        return answered


def main() -> None:
    cloud = os.environ["HOOK_CLOUD_URL"]
    context = ssl.create_default_context(cafile=os.environ["HOOK_CLOUD_CA"])
    other = sys.argv[1:] == ["--other-org"]
    user, password_file = (
        (os.environ["HOOK_OTHER_LOGIN"], os.environ["HOOK_OTHER_PASSWORD_FILE"])
        if other
        else ("admin", os.environ["HOOK_ADMIN_PASSWORD_FILE"])
    )
    password = Path(password_file).read_text().strip()
    login = _post(f"{cloud}/v1/auth/login", context, {"login": user, "password": password})
    body = {"device_id": os.environ["DEVICE_ID"], "password": os.environ["PASSWORD"]}
    _post(f"{cloud}/v1/cameras", context, body, login["session"])
    with Path(os.environ["HOOK_LOG"]).open("a") as log:
        log.write(("other " if other else "") + os.environ["DEVICE_ID"] + "\n")


if __name__ == "__main__":
    main()
