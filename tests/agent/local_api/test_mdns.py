"""mDNS naming and TXT contents (the announcement itself runs in the e2e tests)."""

from __future__ import annotations

from agent.local_api import mdns


def test_instance_name_from_name_else_id() -> None:
    assert mdns.instance_name("Front door", "aa:bb:cc:dd:ee:ff") == "Front door"
    assert mdns.instance_name("", "aa:bb:cc:dd:ee:ff") == "camagent aa:bb:cc:dd:ee:ff"
    assert mdns.instance_name(" \n.\t", "x") == "camagent x"


def test_instance_name_is_one_label_of_at_most_63_bytes() -> None:
    name = mdns.instance_name("Cam.1\x00\nlobby" + "é" * 60, "x")
    assert "." not in name
    assert "\x00" not in name
    assert "\n" not in name
    assert len(name.encode()) <= 63
    assert name.startswith("Cam 1 lobby")
    name.encode().decode("utf-8")  # never cut inside a character


def test_host_name() -> None:
    assert mdns.host_name("AA:BB:cc:dd:ee:ff") == "camagent-aa-bb-cc-dd-ee-ff.local."


def test_txt_record() -> None:
    info = {"id": "i", "kind": "nvr", "state": "connected", "ver": "0.1", "name": "n"}
    assert mdns.txt_record(info, "f" * 64) == {
        "id": "i",
        "kind": "nvr",
        "state": "connected",
        "ver": "0.1",
        "fp": "f" * 64,
        "pv": "1",
    }


def test_addresses_are_ipv4_and_never_empty() -> None:
    found = mdns.ipv4_addresses()
    assert found
    for address in found:
        assert address.count(".") == 3


def test_a_specific_listen_address_is_the_one_announced() -> None:
    assert mdns.ipv4_addresses("192.0.2.7") == ["192.0.2.7"]
    assert (
        "127.0.0.1" not in mdns.ipv4_addresses("0.0.0.0")
        or len(mdns.ipv4_addresses("0.0.0.0")) == 1
    )
