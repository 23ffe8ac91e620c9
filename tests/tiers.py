"""Which tier each test file is in: every test file is in exactly one.

- unit: in-process and pure tests (the default: every file not listed below). The fast
  tier, `scripts/test.sh --fast`, runs these alone.
- e2e: real subprocesses of the mock cloud, the daemon, the RTSP test camera, ffmpeg,
  the packaging tools; and the long in-process runs (the conformance kit, schemathesis,
  the attacks that fill the mock's tables or hold its connections).
- faults: real daemons behind a fault-injecting proxy, in their own mount namespaces.
- browser: the web console (and /docs) in Debian's chromium.
- system: booted Debian containers (systemd-nspawn) and network namespaces (mDNS).

browser and system are also `slow`, as are the benchmark runs, so that `-m slow` still runs
what it always ran. The markers are given by tests/conftest.py from this table;
tests/test_tiers.py checks the table against the files and the markers written in them.
"""

from __future__ import annotations

TIERS = ("unit", "e2e", "faults", "browser", "system")

FILES: dict[str, str] = {
    # e2e
    "tests/agent/video/test_rtsp_probe_camera.py": "e2e",
    "tests/benchmarks/test_benchmarks_smoke.py": "e2e",
    "tests/benchmarks/test_fleet_benchmarks_smoke.py": "e2e",
    "tests/benchmarks/test_video_bench_smoke.py": "e2e",
    "tests/cloud_mock/test_demo.py": "e2e",
    "tests/cloud_mock/test_main.py": "e2e",
    "tests/cloud_mock/test_nvr_device_api.py": "e2e",
    "tests/cloud_mock/video/test_archive_e2e.py": "e2e",
    "tests/cloud_mock/video/test_test_camera_e2e.py": "e2e",
    "tests/cloud_mock/video/test_thumbnails_e2e.py": "e2e",
    "tests/contract/test_conformance.py": "e2e",
    "tests/contract/test_fuzz_openapi.py": "e2e",
    "tests/contract/test_generated_client.py": "e2e",
    "tests/contract/test_minimal_device.py": "e2e",
    "tests/e2e/test_claims_e2e.py": "e2e",
    "tests/e2e/test_cli_e2e.py": "e2e",
    "tests/e2e/test_cli_streams_e2e.py": "e2e",
    "tests/e2e/test_cloud_cli_e2e.py": "e2e",
    "tests/e2e/test_daemon_e2e.py": "e2e",
    "tests/e2e/test_hints_e2e.py": "e2e",
    "tests/e2e/test_local_api_e2e.py": "e2e",
    "tests/e2e/test_nvr_e2e.py": "e2e",
    "tests/e2e/test_provisioning_e2e.py": "e2e",
    "tests/e2e/test_qr_e2e.py": "e2e",
    "tests/e2e/test_video_e2e.py": "e2e",
    "tests/hardening/test_attack_connections.py": "e2e",
    "tests/hardening/test_attack_lockout.py": "e2e",
    "tests/hardening/test_attacks_mock_growth.py": "e2e",
    "tests/hardening/test_attacks_mock_net.py": "e2e",
    "tests/hardening/test_attacks_mock_store.py": "e2e",
    "tests/hardening/test_crash_safety.py": "e2e",
    "tests/install/test_script_static.py": "e2e",
    "tests/install/test_served.py": "e2e",
    "tests/install/test_wheels.py": "e2e",
    "tests/test_audit.py": "e2e",
    # faults
    "tests/faults/test_network_faults.py": "faults",
    "tests/faults/test_proxy.py": "faults",
    # browser
    "tests/console/test_console_archive.py": "browser",
    "tests/console/test_console_browser.py": "browser",
    "tests/console/test_console_nvr_video.py": "browser",
    "tests/console/test_console_phone.py": "browser",
    "tests/console/test_console_scan.py": "browser",
    "tests/console/test_console_video.py": "browser",
    "tests/contract/test_docs_browser.py": "browser",
    # system
    "tests/lan/test_finder_lan.py": "system",
    "tests/lan/test_harness.py": "system",
    "tests/system/test_install_sh.py": "system",
    "tests/system/test_package.py": "system",
    "tests/system/test_sandbox.py": "system",
}

SLOW_TIERS = frozenset({"browser", "system"})
SLOW_FILES = frozenset(
    {
        "tests/benchmarks/test_benchmarks_smoke.py",
        "tests/benchmarks/test_fleet_benchmarks_smoke.py",
        "tests/benchmarks/test_video_bench_smoke.py",
    }
)


def tier_of(path: str) -> str:
    """The tier of a test file, by its path from the repository's root."""
    return FILES.get(path, "unit")


def is_slow(path: str) -> bool:
    return tier_of(path) in SLOW_TIERS or path in SLOW_FILES
