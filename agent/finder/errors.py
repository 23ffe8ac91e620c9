"""The finder's errors: part of the one CamagentError hierarchy (agent.errors)."""

from __future__ import annotations

from agent.errors import CamagentError


class FinderError(CamagentError):
    """Scanning, reaching or commanding a device on the LAN failed; the message says why."""


class FingerprintError(FinderError):
    """The device's certificate is not the one expected: nothing secret was sent."""


class AuthError(FinderError):
    """The device refused the password, or locked us out for a while."""


class DeviceRefused(FinderError):
    """The device answered a request with an error status (other than 401/429)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
