"""The cloud link checks ca_file at start, before READY=1, without building the context."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cloud_link import CloudLink
from agent.config import CloudConfig, Config
from agent.errors import ConfigError
from cloud_mock.pki import ensure_pki


def link(ca_file: str) -> CloudLink:
    return CloudLink(Config(cloud=CloudConfig(ca_file=ca_file)), "aa:bb:cc:dd:ee:ff")


def test_a_missing_ca_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cloud\.ca_file .* does not exist"):
        link(str(tmp_path / "nope.pem")).prepare()


def test_a_ca_file_that_is_not_pem_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="is not a PEM bundle"):
        link(str(bad)).prepare()


async def test_a_good_ca_file_passes_and_the_session_trusts_it(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, "127.0.0.1")
    good = link(str(pki.ca_cert_path))
    good.prepare()
    session = good.http()
    try:
        assert session is good.http()  # one session
    finally:
        await good.close()
