"""Devices this computer has talked to: their certificate fingerprints (trust on first use).

`$XDG_CONFIG_HOME/camagent/known_devices.json` (default `~/.config/...`), mode 0600:
`{"version": 1, "devices": {ID: {"fp", "address", "first_seen", "last_seen"}}}`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from agent.atomic_file import write_atomic
from agent.finder.errors import FinderError, FingerprintError

FILE_NAME = "known_devices.json"
FP_RE = re.compile(r"^[0-9a-f]{64}$")


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "camagent" / FILE_NAME


@dataclass
class KnownDevice:
    fp: str
    address: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0


class Trust(Enum):
    KNOWN = "known"  # the remembered fingerprint, as before
    NEW = "new"  # first use: now remembered
    REPLACED = "replaced"  # differed, and the user accepted the new one


class KnownDevices:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.devices: dict[str, KnownDevice] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> KnownDevices:
        store = cls(path or default_path())
        try:
            raw = store.path.read_text()
        except FileNotFoundError:
            return store
        except OSError as exc:
            raise FinderError(f"cannot read {store.path}: {exc.strerror}") from None
        store.devices = _parse(raw, store.path)
        return store

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"version": 1, "devices": {k: asdict(v) for k, v in sorted(self.devices.items())}}
        write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode(), 0o600)

    def verify(self, device_id: str, fp: str, *, accept_new: bool) -> Trust:
        """How `fp` compares with what we remember of `device_id`.

        Raises FingerprintError when it differs and the user did not accept the change.
        """
        known = self.devices.get(device_id)
        if known is None:
            return Trust.NEW
        if known.fp == fp:
            return Trust.KNOWN
        if not accept_new:
            raise FingerprintError(fingerprint_changed_message(device_id, known.fp, fp, self.path))
        return Trust.REPLACED

    def remember(self, device_id: str, fp: str, address: str) -> None:
        now = time.time()
        known = self.devices.get(device_id)
        first_seen = known.first_seen if known is not None and known.fp == fp else now
        self.devices[device_id] = KnownDevice(fp, address, first_seen, now)
        self.save()


def fingerprint_changed_message(device_id: str, old: str, new: str, path: Path) -> str:
    return (
        f"the certificate of device {device_id} has changed: it was {old}, it is now {new}. "
        "That happens when the device was reset to factory state or its state was erased, "
        "but it is also what an impostor on the network would look like, so nothing was "
        "sent. If you know why it changed, run the command again with --accept-new-fp "
        f"(or remove {device_id} from {path})."
    )


def _parse(raw: str, path: Path) -> dict[str, KnownDevice]:
    problem = f"{path} is not a known-devices file"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise FinderError(f"{problem} ({exc}); fix or remove it") from None
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, dict):
        raise FinderError(f'{problem} (no "devices" object); fix or remove it')
    parsed: dict[str, KnownDevice] = {}
    for device_id, entry in devices.items():
        fp = entry.get("fp") if isinstance(entry, dict) else None
        if not isinstance(fp, str) or not FP_RE.match(fp):
            raise FinderError(f"{problem} (bad fingerprint for {device_id}); fix or remove it")
        parsed[device_id] = KnownDevice(
            fp,
            str(entry.get("address", "")),
            _number(entry.get("first_seen")),
            _number(entry.get("last_seen")),
        )
    return parsed


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
