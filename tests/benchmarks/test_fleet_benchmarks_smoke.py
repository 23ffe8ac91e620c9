"""`python -m benchmarks.run --only fleet_load,fleet_sim` works end to end (small N)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "fleet_load.held",
    "fleet_load.add_to_answer",
    "fleet_load.memory_per_held_poll",
    "fleet_load.memory_after_release",
    "fleet_load.polls_per_s",
    "fleet_load.fresh_polls_per_s",
    "fleet_sim.steady",
    "fleet_sim.peak",
    "fleet_sim.exact_check",
)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_fleet_benchmarks_write_numeric_results(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--only",
            "fleet_load,fleet_sim",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    results = json.loads(output.read_text())["results"]
    for name in ROWS:
        entry = results[name]
        assert entry["error"] is None, entry["error"]
        assert isinstance(entry["value"], int | float), name
        assert math.isfinite(entry["value"]), name
        assert name in result.stdout
    # Figures that do not depend on the machine.
    held = results["fleet_load.held"]["details"]
    assert held["held"] == held["requested"] == 200
    assert held["sample_statuses"] == {"200": 10}
    assert results["fleet_sim.exact_check"]["passed"] is True
    assert results["fleet_sim.steady"]["passed"] is True
