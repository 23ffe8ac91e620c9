#!/bin/sh
# Sets everything up, then runs the linters and every test tier (tests/tiers.py).
#
#   scripts/test.sh               setup, ruff, mypy, then the tiers one after another:
#                                 unit, e2e and faults on both cores, browser, system
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
status=0
tier() {
    name="$1"
    shift
    echo "test: pytest, $name tier"
    code=0
    .venv/bin/pytest --durations=15 "$@" || code=$?
    if [ "$status" -eq 0 ]; then status=$code; fi
}
tier unit -m unit -n 2
tier "e2e and faults" -m "e2e or faults" -n 2 --dist loadfile
tier browser -m browser
tier system -m system
exit "$status"
