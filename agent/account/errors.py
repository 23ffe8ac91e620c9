"""Errors of `camagent cloud …` and of the API other commands use to act in the cloud."""

from __future__ import annotations

from agent.errors import CamagentError


class CloudError(CamagentError):
    """The cloud could not be reached, or refused a request; the message says why."""


class ProfileError(CamagentError):
    """A server profile that does not exist, cannot be added, or a profiles file that
    cannot be read."""


class NoProfileError(ProfileError):
    """No server profile has been added yet."""


class NotLoggedInError(CloudError):
    """No session for the profile, or the cloud no longer accepts it."""
