#!/bin/sh
# Sets everything up, then runs the demo: the mock cloud and a camera on loopback.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/camagent demo "$@"
