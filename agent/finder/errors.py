"""The finder's errors: part of the one CamagentError hierarchy (agent.errors)."""

from __future__ import annotations

from agent.errors import CamagentError


class FinderError(CamagentError):
    """Scanning, reaching or commanding a device on the LAN failed; the message says why."""


class FingerprintError(FinderError):
    """The device's certificate is not the one expected: nothing secret was sent."""


class AuthError(FinderError):
    """The device refused the password, or locked us out for a while."""
