"""What the NVR (registrator) routes share: permissions, field checks, token minting,
linking a device, and the registrator as JSON (docs/design.md §3).

Who may add NVRs: the organization's owner or a user with the manage-registrators
permission, and only while the organization has a business account. Every refusal
names what is missing.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from agent.errors import ActivationCodeError, CodeMistypedError, WireError
from agent.nvr import activation_code
from agent.provisioning.wire import normalize_device_id
from agent.token_codec import sign_token
from cloud_mock.api import ApiError, get_str
from cloud_mock.devices_ws import CHANNELS, CLOSE_REVOKED
from cloud_mock.installer import install_line
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.provisioning import WAITERS
from cloud_mock.store import Registrator
from cloud_mock.users import Caller
from cloud_mock.video.info import video_json
from cloud_mock.video.sources import nvr_cameras

log = logging.getLogger(__name__)

MANAGER_ROLES = ("owner", "manage_registrators")
DEVICES = ("virtual", "network")
QUALITIES = ("low", "medium", "high")
CHECK_STATUSES = ("ok", "warn", "fail")
DEFAULT_BROADCAST: dict[str, Any] = {"enabled": False, "quality": "medium"}
DEFAULT_ARCHIVE: dict[str, Any] = {"enabled": False, "days": 7}
ARCHIVE_DAYS = (1, 365)
MAX_NAME = 128
MAX_NOTE = 1024
MAX_VERSION = 128
MAX_CHECKS = 20
MAX_CHECK_TEXT = 1024
MAX_CHECKS_BYTES = 4 * 1024  # all the checks of one registration, as stored (JSON)
# Tokens of activated codes wait for their NVRs; while those of several organizations
# wait for one device ID, each is offered to the poll this long in turn (the provisioning
# service holds one NVR secret per device ID).
NVR_TOKEN_TURN_S = 900.0


# --- permissions ----------------------------------------------------------------------------


def require_manager(
    request: web.Request, caller: Caller, action: str, *, business: bool = True
) -> None:
    """403 unless the caller may `action` (e.g. "add NVRs"); `business=False` checks the
    role only."""
    user = caller.user
    if user.role not in MANAGER_ROLES:
        raise ApiError(
            403,
            f"your role {user.role!r} may not {action}: ask the owner of {user.org!r} "
            "for the manage-registrators permission",
        )
    if business and not request.app[STORE].accounts.org_is_business(user.org):
        raise ApiError(403, no_business(user.org))


def no_business(org: str) -> str:
    return f"organization {org!r} has no business account: NVRs need one"


def org_of_body(data: Mapping[str, Any], caller: Caller) -> str:
    """The optional `org` field: it may only name the caller's own organization."""
    org = get_str(data, "org", required=False, default=caller.user.org, max_len=MAX_NAME)
    if org != caller.user.org:
        raise ApiError(403, f"you may add NVRs only to your organization {caller.user.org!r}")
    return org


# --- field checks ---------------------------------------------------------------------------


def device_id_of(data: Mapping[str, Any]) -> str:
    raw = get_str(data, "device_id", max_len=256)
    try:
        return normalize_device_id(raw)
    except WireError as error:
        raise ApiError(400, str(error)) from None


def parse_code(raw: object) -> str:
    """A code as a person typed it → `XXXX-XXXX-XXXX`; 400 says malformed or mistyped."""
    if not isinstance(raw, str) or len(raw) > 64:
        raise ApiError(400, "field 'code' must be an activation code like ABCD-EFGH-JK13")
    try:
        return activation_code.parse(raw)
    except CodeMistypedError as error:
        raise ApiError(400, str(error)) from None
    except ActivationCodeError as error:
        raise ApiError(400, str(error)) from None


def parse_checks(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """`checks`: the NVR's device-side check results, `[{name, status, detail, fix}]`."""
    raw = data.get("checks", [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "field 'checks' must be a list of {name, status, detail, fix}")
    if len(raw) > MAX_CHECKS:
        raise ApiError(400, f"field 'checks' has more than {MAX_CHECKS} entries")
    checks = []
    for index, item in enumerate(raw):
        where = f"checks[{index}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be an object {{name, status, detail, fix}}")
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise ApiError(400, f"{where}.name must be a string of 1 to {MAX_NAME} characters")
        status = item.get("status")
        if status not in CHECK_STATUSES:
            raise ApiError(400, f"{where}.status must be one of {', '.join(CHECK_STATUSES)}")
        check = {"name": name, "status": str(status)}
        for key in ("detail", "fix"):
            text = item.get(key, "")
            if text is None:
                text = ""
            if not isinstance(text, str) or len(text) > MAX_CHECK_TEXT:
                raise ApiError(
                    400, f"{where}.{key} must be a string of at most {MAX_CHECK_TEXT} characters"
                )
            check[key] = text
        checks.append(check)
    if len(json.dumps(checks)) > MAX_CHECKS_BYTES:
        raise ApiError(
            400, f"field 'checks' is larger than {MAX_CHECKS_BYTES} bytes in all: shorten them"
        )
    return checks


def parse_device(data: Mapping[str, Any], default: str | None) -> str | None:
    if data.get("device") is None:
        return default
    device = data["device"]
    if device not in DEVICES:
        raise ApiError(400, f"field 'device' must be one of {', '.join(DEVICES)}")
    return str(device)


# --- linking a device -----------------------------------------------------------------------


def mint_token(
    request: web.Request, *, device_id: str, org: str, registrator_id: str
) -> tuple[str, str]:
    """A signed NVR token and its jti."""
    config = request.app[CONFIG]
    jti = uuid.uuid4().hex
    token = sign_token(
        {
            "v": 1,
            "sub": device_id,
            "kind": "nvr",
            "org": org,
            "api": config.url,
            "iat": int(request.app[CLOCK].now()),
            "jti": jti,
            "rid": registrator_id,
        },
        config.signing_key,
    )
    return token, jti


def make_room(request: web.Request, device_id: str, org: str, secret_hash: bytes) -> None:
    """Before linking `device_id` in `org` for the NVR whose secret hashes to
    `secret_hash`.

    Only `org`'s own things count, and only they are named in a refusal: its camera with
    that ID (409), or its registrator linked to it. That registrator lets go of the
    device (its token revoked, its channel closed) when the new link shows the secret it
    was linked with: the same NVR, linked anew. It also lets go when it was linked before
    secrets were recorded (held without proof). Under another secret it stays and the
    answer says what to do (409): a registration token or a code of the org cannot take
    the org's NVR from it. Other organizations' cameras, claims and registrators of the
    same ID block nothing and change nothing: a device ID may be linked in several
    organizations, each link to the NVR that made it, so whoever names an ID first holds
    nothing against its owner, and the answer is the same as for a free ID.
    """
    store = request.app[STORE]
    if store.devices.camera_of(org, device_id) is not None:
        raise ApiError(409, f"device ID {device_id} belongs to a camera of {org!r}, not to an NVR")
    current = store.registrators.registrator_of(org, device_id)
    if current is None:
        return
    if current.secret_hash is not None and not hmac.compare_digest(
        current.secret_hash, secret_hash
    ):
        raise ApiError(
            409,
            f"NVR {device_id} is linked to registrator {current.name!r} of {org!r} by an NVR "
            "with another secret (was it reset or installed again?): delete that "
            "registrator first, then link the NVR again",
        )
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(request.app[CLOCK].now()))
    let_go(
        request.app,
        current.id,
        device_id,
        why=f"its NVR {device_id} registered again (reset or installed again) and was linked "
        f"to another registrator on {at}: its token is spent and this registrator has "
        "nothing left to set up; delete it",
    )
    log.info("NVR %s let go of by registrator %s (linked anew)", device_id, current.id)


def let_go(app: web.Application, registrator_id: str, device_id: str, why: str = "") -> None:
    """The registrator forgets its NVR: token revoked, channel closed, and the next token
    waiting for an NVR of that device ID (another organization's) offered. `why` stays
    on it for the console."""
    app[STORE].registrators.unlink_registrator(registrator_id, app[CLOCK].now(), why)
    close_channel(app, registrator_id)
    offer_tokens(app, device_id)


def offer_tokens(app: web.Application, device_id: str) -> int:
    """Put the token (of an activated code) that should wait for its NVR now where the
    NVR's poll finds it; wake the polls held for that device if it changed. How many
    were woken."""
    if app[STORE].registrators.offer_nvr_token(device_id, app[CLOCK].now(), NVR_TOKEN_TURN_S):
        return app[WAITERS].notify(device_id)
    return 0


def close_channel(app: web.Application, registrator_id: str) -> None:
    channels = app[CHANNELS]
    channel = channels.get(registrator_id)
    if channel is not None:
        channels.close(channel, CLOSE_REVOKED, "token revoked")


# --- the registrator as JSON ----------------------------------------------------------------


def status_of(registrator: Registrator, online: bool) -> str:
    """pending (not linked, or linked but never connected) → online → offline. A pending
    registrator whose NVR was linked anew to another says why in `let_go`."""
    if online:
        return "online"
    return "offline" if registrator.hello_at is not None else "pending"


def registrator_json(app: web.Application, registrator: Registrator) -> dict[str, Any]:
    online = app[CHANNELS].is_online(registrator.id)
    return {
        "id": registrator.id,
        "org": registrator.org,
        "name": registrator.name,
        "note": registrator.note,
        "device": registrator.device,
        "status": status_of(registrator, online),
        "device_id": registrator.device_id,
        "device_name": registrator.device_name,
        "version": registrator.version,
        "checks": registrator.checks,
        "cameras": _cameras_json(app, registrator),
        "broadcast": registrator.broadcast,
        "archive": registrator.archive,
        "settings_pending": registrator.pending_configure,
        "let_go": registrator.let_go,
        "created": registrator.created,
        "last_seen": registrator.last_seen,
        "linked_at": registrator.linked_at,
    }


def _cameras_json(app: web.Application, registrator: Registrator) -> list[dict[str, Any]]:
    """The synced cameras, each with its `video` (the probe's reachability, the
    thumbnail, the recording): what the console shows instead of the NVR's "online"."""
    sources = {source.name: source for source in nvr_cameras(registrator)}
    return [
        {**entry, "video": video_json(app, sources[name])}
        if isinstance(entry, dict) and isinstance(name := entry.get("name"), str)
        else entry
        for entry in registrator.cameras
    ]


def installation(app: web.Application) -> dict[str, str]:
    config = app[CONFIG]
    return {
        # With --cacert: the mock's CA is its own, which no system trusts.
        "one_liner": install_line(config.url, config.data_dir, "--nvr"),
        "cloud_url": config.url,
    }
