"""The benchmark runner works end to end (figures are not judged here: machines differ)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_run_writes_numeric_results(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--only",
            "ready_time,idle_rss",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    # 0 = all targets met, 1 = a target missed; both are a working run.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert "benchmark" in result.stdout
    assert "how measured" in result.stdout

    document = json.loads(output.read_text())
    assert document["quick"] is True
    assert document["only"] == ["ready_time", "idle_rss"]
    results = document["results"]
    for name in ("ready_time", "idle_rss"):
        entry = results[name]
        assert entry["error"] is None, entry["error"]
        assert isinstance(entry["value"], int | float)
        assert not isinstance(entry["value"], bool)
        assert math.isfinite(entry["value"])
        assert entry["value"] > 0
        assert isinstance(entry["passed"], bool)
        assert entry["target"]
        assert entry["how"]
        assert name in result.stdout
    assert all(isinstance(t, int | float) for t in results["ready_time"]["details"]["runs_ms"])
    # The floor under the venv figure: the libraries alone, and the daemon's own share.
    for name in ("idle_rss.libraries", "idle_rss.libraries.default_config"):
        floor = results[name]
        daemon = results[name.replace(".libraries", "")]["value"]
        assert 0 < floor["value"] < daemon
        assert floor["details"]["share_mib"] == pytest.approx(daemon - floor["value"], abs=0.02)
    # The import-cost table came along with idle_rss.
    tables = document["extra_tables"]
    assert tables
    assert tables[0]["rows"]
    assert document["all_passed"] == (result.returncode == 0)
