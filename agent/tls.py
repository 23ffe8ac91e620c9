"""TLS to the cloud: the system trust store plus the configured `[cloud] ca_file`."""

from __future__ import annotations

import ssl
from pathlib import Path

from agent.errors import ConfigError


def client_context(ca_file: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        if not Path(ca_file).is_file():
            raise ConfigError(f"cloud.ca_file {ca_file} does not exist")
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"cloud.ca_file {ca_file} is not a PEM bundle: {exc}") from None
    return context
