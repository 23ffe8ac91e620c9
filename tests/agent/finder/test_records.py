"""TXT parsing, matching DEVICE names, and the scan output."""

from __future__ import annotations

from agent.finder.records import (
    SERVICE_TYPE,
    DeviceRecord,
    decode_txt,
    format_table,
    record_from_service,
    sort_records,
)

FP = "ab" * 32


def _record(**overrides: object) -> DeviceRecord:
    props: dict[bytes, bytes | None] = {
        b"id": b"aa:bb:cc:dd:ee:01",
        b"kind": b"camera",
        b"state": b"provisioning",
        b"ver": b"1.0",
        b"FP": FP.upper().encode(),
        b"pv": b"1",
    }
    name = str(overrides.pop("name", f"cam one.{SERVICE_TYPE}"))
    return record_from_service(name, ["10.0.0.5"], 9443, props, "cam.local.")


def test_txt_keys_are_case_insensitive_and_valueless_keys_read_empty() -> None:
    assert decode_txt({b"ID": b"x", b"flag": None, b"bad": b"\xff"}) == {
        "id": "x",
        "flag": "",
        "bad": "\ufffd",
    }


def test_record_from_service_reads_contract_fields() -> None:
    record = _record()
    assert (record.id, record.kind, record.state, record.ver, record.pv) == (
        "aa:bb:cc:dd:ee:01",
        "camera",
        "provisioning",
        "1.0",
        "1",
    )
    assert record.fp == FP  # normalised to lower case
    assert record.instance == "cam one"
    assert record.address == "10.0.0.5"
    assert record.to_json()["fp"] == FP  # scripts get the full fingerprint


def test_matches_id_and_instance_name_but_not_substrings() -> None:
    record = _record()
    assert record.matches("AA:BB:CC:DD:EE:01")
    assert record.matches("cam one")
    assert record.matches(f"cam one.{SERVICE_TYPE}")
    assert not record.matches("cam")
    assert not record.matches("")


def test_table_shortens_fingerprint_and_counts() -> None:
    table = format_table([_record()], 1.234)
    assert FP[:16] + "…" in table
    assert FP not in table
    assert "10.0.0.5" in table
    assert "9443" in table
    assert "provisioning" in table
    assert table.endswith("1 device found in 1.2 s.")


def test_table_with_nothing_found_says_so() -> None:
    assert "No camagent device answered within 3.0 s" in format_table([], 3.0)


def test_sort_by_id() -> None:
    a = record_from_service(f"z.{SERVICE_TYPE}", [], 1, {b"id": b"b"})
    b = record_from_service(f"y.{SERVICE_TYPE}", [], 1, {b"id": b"a"})
    assert [r.id for r in sort_records([a, b])] == ["a", "b"]
