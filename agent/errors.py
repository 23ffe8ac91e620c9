"""One exception hierarchy for everything camagent reports to a person.

Every message should tell the reader what went wrong *and* what to do about it.

An error that refuses a request for a reason the requester can act on carries the
answer the local API gives it (`http`: status and error code, docs/design.md §5), so
the API maps errors to HTTP in one place (agent.local_api.server) and a new refusal is
named where it is raised. An error without one is the device's own failure.
"""

from __future__ import annotations


class CamagentError(Exception):
    """Base class: `str(error)` is a message a user can act on."""

    http: tuple[int, str] | None = None  # (status, error code) the local API answers


class ConfigError(CamagentError):
    """The configuration file is missing, unreadable or invalid."""


class TokenError(CamagentError):
    """A token failed decoding, signature, device or cloud checks."""

    http = (400, "token_refused")


class WireError(CamagentError):
    """A message from the network was malformed."""


class StateError(CamagentError):
    """The device state could not be read or written."""


class DaemonUnavailable(CamagentError):
    """No daemon answers on the control socket."""


class ActivationCodeError(CamagentError):
    """An activation code that cannot be read (wrong length or characters)."""


class CodeMistypedError(ActivationCodeError):
    """Every character is valid but the check character does not match: a typo."""


class QrPayloadError(CamagentError):
    """A QR code's text is a WIFI: or CAMAGENT: payload that is malformed."""


class QrError(CamagentError):
    """A QR source (image, video, camera, stream) that cannot be opened or read."""


class TunnelRefused(CamagentError):
    """The device will not open a video tunnel (docs/design.md §12.2): the reason says why."""
