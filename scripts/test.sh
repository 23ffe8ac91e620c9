#!/bin/sh
# Sets everything up, then runs the linters and every test tier (tests/tiers.py).
#
#   scripts/test.sh               setup, ruff, mypy, then the tiers one after another:
#                                 unit, e2e and faults on both cores, browser, system;
#                                 then their branch coverage, which fails under a floor
#   scripts/test.sh --fast        the unit tier alone, on both cores, fewer examples per
#                                 property test (no setup: run the full command once first)
#   scripts/test.sh ARGS...       setup, ruff, mypy, then pytest ARGS (e.g. -m e2e, -k name)
set -eu
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fast" ]; then
    shift
    if [ ! -x .venv/bin/pytest ]; then
        echo "test: no .venv yet: run scripts/test.sh once (it sets everything up)" >&2
        exit 2
    fi
    CAMAGENT_TESTS_FAST=1 exec .venv/bin/pytest -m unit -n 2 -q "$@"
fi

scripts/setup.sh --tests
echo "test: ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "test: mypy"
.venv/bin/mypy

if [ "$#" -gt 0 ]; then
    echo "test: pytest $*"
    exec .venv/bin/pytest "$@"
fi

# Tiers in turn, so that one that fails is named and the ones after it still run; the
# exit status is the first failure's. unit, e2e and faults share the two cores (a file's
# tests stay together: many share a module's mock); the browser and system tiers measure
# pages and boot containers, one thing at a time.
#
# Each tier adds its branch coverage (pyproject.toml's [tool.coverage]: agent and
# cloud_mock, in-process code only) to one data file, reported once at the end; the run
# fails under the floor. The floor is a measured total rounded down: raise it as tests
# are added, never lower it to let a change through. 85: the full run measured 85.67 %
# (agent 86.7 %, cloud_mock 84.8 %; 2026-12-08).
COVERAGE_FLOOR=85
# The agent's pure core (the provisioning wire, schedule and client, the state machine,
# the backoff) is held at 100 % on its own.
CORE="agent/provisioning/*,agent/lifecycle.py,agent/backoff.py"
CORE_FLOOR=100
status=0
tier() {
    name="$1"
    shift
    echo "test: pytest, $name tier"
    code=0
    .venv/bin/pytest --durations=15 --cov --cov-append --cov-report= "$@" || code=$?
    if [ "$status" -eq 0 ]; then status=$code; fi
}
.venv/bin/coverage erase
tier unit -m unit -n 2
tier "e2e and faults" -m "e2e or faults" -n 2 --dist loadfile
tier browser -m browser
tier system -m system
floor() {
    echo "test: branch coverage, $1 (floor $2 %)"
    what="$2"
    shift 2
    code=0
    .venv/bin/coverage report --fail-under="$what" "$@" || code=$?
    if [ "$status" -eq 0 ]; then status=$code; fi
}
floor "agent and cloud_mock" "$COVERAGE_FLOOR"
floor "the agent's pure core" "$CORE_FLOOR" --include="$CORE" --no-skip-covered --show-missing
exit "$status"
