#!/bin/sh
# Sets everything up, then runs the linters and the whole test suite.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not slow"`).
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
echo "test: ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "test: mypy"
.venv/bin/mypy
echo "test: pytest"
exec .venv/bin/pytest "$@"
