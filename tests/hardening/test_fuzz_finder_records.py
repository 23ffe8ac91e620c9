"""Fuzzing what the finder takes from the LAN: mDNS TXT records. Anyone on the segment can
announce `_camagent._tcp` services, so their contents are outside input for the tool an
installer runs on a laptop."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.finder.client import DeviceClient, Endpoint
from agent.finder.errors import FinderError
from agent.finder.records import format_table, record_from_service, sort_records
from tests.examples import examples

TXT_KEYS = [b"id", b"kind", b"state", b"ver", b"fp", b"pv", b"ID", b"Fp", b"x"]
txt = st.dictionaries(
    st.one_of(st.sampled_from(TXT_KEYS), st.binary(max_size=10)),
    st.one_of(st.none(), st.binary(max_size=80)),
    max_size=8,
)


@settings(max_examples=examples(400))
@given(
    st.lists(
        st.tuples(
            st.text(max_size=60),
            st.lists(st.text(max_size=20), max_size=3),
            st.integers(0, 65535),
            txt,
        ),
        max_size=5,
    ),
    st.floats(0, 1e6),
)
def test_any_announcement_becomes_a_record_that_prints(
    services: list[tuple[str, list[str], int, dict[bytes, bytes | None]]], elapsed: float
) -> None:
    records = sort_records(record_from_service(n, a, p, t) for n, a, p, t in services)
    for record in records:
        json.dumps(record.to_json())
        assert record.fp == record.fp.lower()
        assert isinstance(record.matches("aa:bb:cc:dd:ee:ff"), bool)
    assert isinstance(format_table(records, elapsed), str)


def test_control_characters_from_the_lan_do_not_reach_the_terminal() -> None:
    record = record_from_service(
        "x._camagent._tcp.local.", ["192.0.2.1"], 9443, {b"id": b"\x1b]0;owned\x07\x1b[2J"}
    )
    assert "\x1b" not in format_table([record], 1.0)


def test_a_fingerprint_that_is_not_hex_is_a_finder_error() -> None:
    async def enter() -> None:
        client = DeviceClient(Endpoint("192.0.2.1", 9443), "zz" * 32, "announces on the LAN")
        await client.__aenter__()
        await client.__aexit__(None, None, None)

    with pytest.raises(FinderError):
        asyncio.run(enter())
