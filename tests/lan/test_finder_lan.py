"""`camagent finder` against real daemons across network namespaces (docs/design.md §5).

One LAN per module: the mock cloud on the hub, two devices in their own namespaces, the
finder in a third, avahi in a fourth. Tests that change a device put it back.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.eventually import eventually
from tests.lan.announcer import Announcement
from tests.lan.avahi import Avahi, missing_tools
from tests.lan.netns import Namespace
from tests.lan.site import ROOT, Device, Site, wait_local_api

pytestmark = pytest.mark.timeout(300)

# Small lockout settings so the lockout test takes seconds (names from [local_api]).
LOCKOUT: dict[str, Any] = {"lockout_after": 3, "lockout_base_s": 30}


@pytest.fixture(scope="module")
def dev1(site: Site) -> Device:
    return site.device("dev1", **LOCKOUT)


@pytest.fixture(scope="module")
def dev2(site: Site) -> Device:
    """With a recording stand-in for nmcli on its PATH: there is no WiFi radio here."""
    bindir = site.root / "bin"
    bindir.mkdir(exist_ok=True)
    nmcli = bindir / "nmcli"
    nmcli.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(site.root / 'nmcli.log')!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    nmcli.chmod(0o755)
    return site.device("dev2", env={"PATH": f"{bindir}:{os.environ['PATH']}"}, **LOCKOUT)


@pytest.fixture(scope="module")
def finder_ns(site: Site) -> Namespace:
    return site.lan.node("finder")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    eventually(predicate, timeout=timeout, interval=0.2, what=what)


def test_scan_finds_both_devices(
    site: Site, dev1: Device, dev2: Device, finder_ns: Namespace
) -> None:
    found = site.scan(finder_ns)
    assert set(found) == {dev1.device_id, dev2.device_id}
    for device in (dev1, dev2):
        entry, api = found[device.device_id], device.local_api()
        assert entry["address"] == device.ns.address
        assert entry["port"] == api["port"]
        assert entry["fp"] == api["fp"]
        assert entry["kind"] == "camera"
        assert entry["pv"] == "1"
        assert entry["state"] == device.agent.status()["state"]


def test_scan_table_for_people(
    site: Site, dev1: Device, dev2: Device, finder_ns: Namespace
) -> None:
    result = site.finder(finder_ns, "scan", "--timeout", "3")
    assert result.returncode == 0, result.stderr
    assert dev1.device_id in result.stdout
    assert dev2.device_id in result.stdout
    assert dev1.local_api()["fp"] not in result.stdout  # shortened for people
    assert dev1.local_api()["fp"][:16] in result.stdout
    assert "2 devices found" in result.stdout


def test_push_token_then_reset_and_txt_follows(
    site: Site, dev1: Device, finder_ns: Namespace
) -> None:
    camera = site.add_camera(dev1)
    result = site.finder(
        finder_ns,
        "push",
        dev1.device_id,
        "--token",
        camera["sealed_token"],  # what a camera takes outside its poll (§2.9)
        "--password-stdin",
        stdin=dev1.password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "Token pushed" in result.stdout
    assert "now remembered" in result.stderr  # first contact: trust on first use
    dev1.agent.wait_for_state("connected", timeout=30)
    _wait(lambda: site.camera_status(camera["camera_id"]) == "online", 30, "online in the cloud")
    _wait(lambda: site.scan(finder_ns, 2)[dev1.device_id]["state"] == "connected", 30, "TXT")

    # Deleted in the cloud (so provisioning no longer hands the token back), then reset
    # from the LAN: the device provisions again, and a rescan shows it.
    site.delete_camera(camera["camera_id"])
    result = site.finder(
        finder_ns, "reset", dev1.device_id, "--password-stdin", stdin=dev1.password + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert "forgot its token" in result.stdout
    dev1.agent.wait_for_state("provisioning", timeout=30)
    assert dev1.agent.status()["token"]["present"] is False
    _wait(lambda: site.scan(finder_ns, 2)[dev1.device_id]["state"] == "provisioning", 30, "TXT")


def test_push_with_profile_adds_in_cloud_and_connects(
    site: Site, dev1: Device, finder_ns: Namespace
) -> None:
    """The installer's one step: the camera is added in the cloud through a server profile
    (with the device password, asked once) and the token it gets is pushed to the device."""
    xdg = site.root / "installer-config"
    cloud = site.cloud
    steps = [
        (
            [
                "servers",
                "add",
                "site",
                cloud.url,
                "--login",
                "admin",
                "--ca-file",
                str(cloud.ca_file),
            ],
            None,
        ),
        (["login", "--server", "site", "--password-stdin"], cloud.admin_password + "\n"),
    ]
    for argv, stdin in steps:
        done = finder_ns.run(
            [sys.executable, "-m", "agent", "cloud", *argv],
            input=stdin,
            cwd=ROOT,
            env={**os.environ, "XDG_CONFIG_HOME": str(xdg)},
        )
        assert done.returncode == 0, done.stderr
    result = site.finder(
        finder_ns,
        "push",
        dev1.device_id,
        "--profile",
        "site",
        "--name",
        "lobby",
        "--password-stdin",
        stdin=dev1.password + "\n",
        xdg=xdg,
    )
    assert result.returncode == 0, result.stderr
    assert "added in the cloud" in result.stdout
    dev1.agent.wait_for_state("connected", timeout=30)
    session = site.lan.hub.call(cloud.login)
    status, cameras = site.lan.hub.call(cloud.request, "GET", "/v1/cameras", session=session)
    assert status == 200
    items = cameras["cameras"] if isinstance(cameras, dict) else cameras
    mine = [c for c in items if c["device_id"] == dev1.device_id]
    assert len(mine) == 1
    assert mine[0]["name"] == "lobby"
    _wait(lambda: site.camera_status(mine[0]["camera_id"]) == "online", 30, "online")


def test_poll_now_by_host_port(
    site: Site, dev1: Device, dev2: Device, finder_ns: Namespace
) -> None:
    """host:port needs no mDNS: without a terminal to ask on, its first contact is
    refused with the fingerprint and the option to accept it; with the option the key is
    learnt. A device holding a token refuses poll-now with its reason, and the finder's
    command to reset it."""
    local = dev2.local_api()
    target = f"{dev2.ns.address}:{local['port']}"
    refused_new = site.finder(
        finder_ns, "poll-now", target, "--password-stdin", stdin=dev2.password + "\n"
    )
    assert refused_new.returncode == 1
    assert local["fp"] in refused_new.stderr
    assert "--accept-new-fp" in refused_new.stderr
    result = site.finder(
        finder_ns,
        "poll-now",
        target,
        "--password-stdin",
        "--accept-new-fp",
        stdin=dev2.password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "polling" in result.stdout
    assert "now remembered" in result.stderr

    assert dev1.agent.status()["token"]["present"] is True
    refused = site.finder(
        finder_ns, "poll-now", dev1.device_id, "--password-stdin", stdin=dev1.password + "\n"
    )
    assert refused.returncode == 1
    assert "(HTTP 409)" in refused.stderr
    assert "holds a token" in refused.stderr
    reset = shlex.join([sys.executable, "-m", "agent", "finder", "reset", dev1.device_id])
    assert f"run `{reset}` first" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "Unclosed" not in refused.stderr


def test_wifi_reaches_network_manager_and_bad_keys_are_refused(
    site: Site, dev2: Device, finder_ns: Namespace
) -> None:
    ssid, key = 'Shop; "5G"', "s3cret:pass;word"
    result = site.finder(
        finder_ns,
        "wifi",
        dev2.device_id,
        "--ssid",
        ssid,
        "--password",
        key,
        "--hidden",
        "--password-stdin",
        stdin=dev2.password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "joining WiFi network" in result.stdout
    calls = [json.loads(line) for line in (site.root / "nmcli.log").read_text().splitlines()]
    add = next(c for c in calls if c[:2] == ["connection", "add"])
    assert add[add.index("ssid") + 1] == ssid
    assert add[add.index("wifi-sec.psk") + 1] == key

    refused = site.finder(
        finder_ns,
        "wifi",
        dev2.device_id,
        "--ssid",
        "x",
        "--security",
        "WEP",
        "--password",
        "abc",
        "--password-stdin",
        stdin=dev2.password + "\n",
    )
    assert refused.returncode == 1
    assert "(HTTP 400)" in refused.stderr
    assert "WEP key" in refused.stderr


def test_wrong_password_refused_then_locked_out_across_restart(
    site: Site, dev2: Device, finder_ns: Namespace
) -> None:
    def attempt(password: str) -> Any:
        return site.finder(
            finder_ns, "poll-now", dev2.device_id, "--password-stdin", stdin=password + "\n"
        )

    first = attempt("wrong-password")
    assert first.returncode == 1
    assert "refused the password" in first.stderr
    for _ in range(LOCKOUT["lockout_after"] + 1):
        last = attempt("wrong-password")
    assert last.returncode == 1
    assert "locked out for" in last.stderr
    dev2.restart()
    after = attempt(dev2.password)  # even the right password waits out the lockout
    assert after.returncode == 1
    assert "locked out for" in after.stderr


def test_changed_certificate_is_refused_until_accepted(
    site: Site, dev1: Device, finder_ns: Namespace
) -> None:
    # The finder remembers dev1's key from the tests above (or learns it now).
    site.finder(finder_ns, "reset", dev1.device_id, "--password-stdin", stdin=dev1.password + "\n")
    old_fp = dev1.local_api()["fp"]
    dev1.stop()
    for path in dev1.state_dir.glob("local-api.*"):
        path.unlink()
    dev1.restart()
    new_fp = wait_local_api(dev1)["fp"]
    assert new_fp != old_fp
    _wait(lambda: site.scan(finder_ns, 2).get(dev1.device_id, {}).get("fp") == new_fp, 30, "fp")

    refused = site.finder(
        finder_ns, "reset", dev1.device_id, "--password-stdin", stdin=dev1.password + "\n"
    )
    assert refused.returncode == 1
    assert "has changed" in refused.stderr
    assert "--accept-new-fp" in refused.stderr
    accepted = site.finder(
        finder_ns,
        "reset",
        dev1.device_id,
        "--accept-new-fp",
        "--password-stdin",
        stdin=dev1.password + "\n",
    )
    assert accepted.returncode == 0, accepted.stderr
    assert f"Accepted the new fingerprint {new_fp}" in accepted.stderr
    again = site.finder(  # remembered now: no flag needed any more
        finder_ns, "reset", dev1.device_id, "--password-stdin", stdin=dev1.password + "\n"
    )
    assert again.returncode == 0, again.stderr


def test_announced_fingerprint_that_the_peer_does_not_hold_is_refused(
    site: Site, dev1: Device, finder_ns: Namespace
) -> None:
    """An impostor announcement: dev1's address and port, someone else's fingerprint."""
    impostor = site.lan.node("impostor")
    port = dev1.local_api()["port"]
    fake_fp = "0" * 64
    txt = {"id": "impostor-1", "fp": fake_fp, "pv": "1"}
    with Announcement(impostor, "impostor", dev1.ns.address, port, txt):
        result = site.finder(
            finder_ns, "poll-now", "impostor-1", "--password-stdin", stdin="anything\n"
        )
    assert result.returncode == 1
    assert "it may be an impostor, so nothing was sent" in result.stderr
    assert fake_fp in result.stderr


async def _raw_requests(address: str, port: int, fp: str, password: str) -> dict[str, int]:
    """Bodies a device must refuse with a 4xx (never a 500), sent with a valid Digest."""
    statuses: dict[str, int] = {}
    connector = aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(bytes.fromhex(fp)))
    async with aiohttp.ClientSession(connector=connector) as session:
        base = f"https://{address}:{port}"
        cases: dict[str, tuple[str, bytes, str]] = {
            "malformed": ("/v1/token", b"{not json", "application/json"),
            "not_object": ("/v1/token", b"[1, 2]", "application/json"),
            "missing_field": ("/v1/token", b"{}", "application/json"),
            "wrong_type": ("/v1/wifi", json.dumps({"ssid": 5}).encode(), "application/json"),
            "huge": ("/v1/token", b'{"token": "' + b"x" * (2 << 20) + b'"}', "application/json"),
            "content_type": ("/v1/token", b"token=x", "text/plain"),
        }
        for name, (path, data, ctype) in cases.items():
            digest = aiohttp.DigestAuthMiddleware("admin", password)
            # aiohttp warns of a raw body over 1 MiB (it may block its loop); the huge one
            # is sent raw on purpose, and Digest's retry must be able to send it again.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                async with session.post(
                    base + path, data=data, headers={"Content-Type": ctype}, middlewares=(digest,)
                ) as response:
                    statuses[name] = response.status
    return statuses


def test_malformed_and_huge_bodies_get_4xx(site: Site, dev1: Device, finder_ns: Namespace) -> None:
    api = dev1.local_api()
    statuses = finder_ns.call(
        asyncio.run, _raw_requests(dev1.ns.address, api["port"], api["fp"], dev1.password)
    )
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert statuses["huge"] == 413
    assert statuses["content_type"] == 415
    assert statuses["malformed"] == 400
    assert dev1.agent.process.poll() is None  # still running


@pytest.fixture(scope="module")
def avahi(site: Site) -> Iterator[Avahi]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"interop test needs {', '.join(missing)} (Debian: avahi-daemon avahi-utils)")
    ns = site.lan.node("avahi")
    daemon = Avahi(ns, site.root / "avahi")
    daemon.start()
    yield daemon
    daemon.stop()


def test_avahi_browse_sees_the_device_and_its_txt(dev2: Device, avahi: Avahi) -> None:
    api = dev2.local_api()
    try:
        mine = eventually(
            lambda: [line for line in avahi.browse() if f'"id={dev2.device_id}"' in line[9]],
            timeout=30,
            interval=0.2,
            what="avahi-browse finding the device",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{avahi.log()}") from None
    line = mine[0]
    assert line[7] == dev2.ns.address
    assert int(line[8]) == api["port"]
    assert f'"fp={api["fp"]}"' in line[9]
    assert '"pv=1"' in line[9]
    assert '"kind=camera"' in line[9]
