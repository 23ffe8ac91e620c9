#!/bin/sh
# Sets up a development checkout on Debian 12: system packages, .venv, the project.
# Safe to run again: it only installs what is missing.
#   scripts/setup.sh           what the demo needs (a venv with the project)
#   scripts/setup.sh --tests   everything the tests need too
set -eu

cd "$(dirname "$0")/.."

for_tests=false
[ "${1:-}" = "--tests" ] && for_tests=true

# The venv itself; gcc and the headers for wheels that compile. For the mock cloud's video
# (docs/design.md §12): Debian's ffmpeg pulls the cameras' RTSP through their tunnels, and
# the demo's test camera is GStreamer's RTSP server (run by Debian's python3, whose
# GObject bindings the venv does not have). The device package needs none of these.
APT_PACKAGES="python3-venv python3-dev gcc
    ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
if $for_tests; then
    # libsystemd-dev + pkg-config: to build systemd-python (journal fields, sd_notify);
    # the Debian package and the booted-container system tests (tests/system);
    # libzbar0 for pyzbar (the QR fallback decoder); GStreamer's x265 encoder (plugins-bad)
    # for the test camera that a browser cannot play; Debian's chromium for the web
    # console's browser tests
    # (Playwright drives it, no browser download; certutil puts the mock CA in its trust
    # store); avahi for the mDNS interop test; Debian's own aiohttp, zeroconf and
    # cryptography, on which the .deb runs, for the footprint benchmark (idle_rss.debian).
    APT_PACKAGES="$APT_PACKAGES libsystemd-dev pkg-config
        dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
        lintian shellcheck dash systemd-container mmdebstrap
        libzbar0 gstreamer1.0-plugins-bad
        chromium libnss3-tools avahi-daemon avahi-utils dbus iproute2
        python3-aiohttp python3-zeroconf python3-cryptography"
    EXTRAS="[dev,systemd]"
    # npm fetches the console's QR decoder (below); Node.js may come from elsewhere.
    command -v npm >/dev/null 2>&1 || APT_PACKAGES="$APT_PACKAGES npm"
else
    EXTRAS=""
fi

missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "setup: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# quietly COMMAND...: runs it with its output kept aside, shown only when it fails (pip
# relays setuptools' notices on every editable install, and a pip configured with absent
# package locations warns about each of them).
quietly() {
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup: failed: $*" >&2
        exit 1
    fi
    rm -f "$log"
}

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

# Two distributions from one checkout: the agent (what a device gets) and the mock cloud
# (the test side). Reinstall only when a dependency list or the extras asked for changed;
# the test extras include the demo's, so a test setup serves the demo too.
stamp=".venv/.camagent-deps"
deps="$(cat pyproject.toml cloud_mock/pyproject.toml cloud_mock/setup.py | sha256sum | cut -d' ' -f1)"
want="$deps $EXTRAS"
have="$(cat "$stamp" 2>/dev/null || true)"
case "$have" in
    "$want" | "$deps [dev,systemd]") ;;
    *)
        echo "setup: installing Python packages into .venv"
        quietly .venv/bin/python -m pip install -q --upgrade pip
        quietly .venv/bin/python -m pip install -q -e ".$EXTRAS" -e ./cloud_mock
        echo "$want" > "$stamp"
        ;;
esac

# The mock's third-party browser code from the npm registry into its static files, pinned
# by version and sha512 (cloud_mock/console/vendor.sh; a wheel of the mock built without
# them fetches them the same way): the web console's QR decoder (zxing-wasm), its archive
# player (hls.js, for browsers without HLS of their own) and the renderer of /docs
# (swagger-ui-dist). No CDN at run time. Without npm the mock still works; "Scan label",
# the archive player and /docs say what is missing.
if command -v npm >/dev/null 2>&1; then
    cloud_mock/console/vendor.sh
else
    echo "setup: npm not found: the console's Scan label stays off, its archive plays only in browsers with HLS, and /docs has no renderer (apt-get install npm)"
fi

# The AsyncAPI 3.0 JSON Schema (npm's @asyncapi/specs), for the test that validates
# docs/api/asyncapi.yaml as a whole; kept in the venv, which only the tests use.
if $for_tests; then
    ASYNCAPI_SPECS_VERSION="6.11.1"
    specs=".venv/share/asyncapi-specs"
    if [ ! -f "$specs/VERSION" ] || [ "$(cat "$specs/VERSION")" != "$ASYNCAPI_SPECS_VERSION" ]; then
        if command -v npm >/dev/null 2>&1; then
            echo "setup: fetching @asyncapi/specs $ASYNCAPI_SPECS_VERSION for the contract tests"
            tmp="$(mktemp -d)"
            (cd "$tmp" && npm pack --silent "@asyncapi/specs@$ASYNCAPI_SPECS_VERSION" >/dev/null)
            tar -xzf "$tmp/asyncapi-specs-$ASYNCAPI_SPECS_VERSION.tgz" -C "$tmp"
            mkdir -p "$specs"
            cp "$tmp/package/schemas/3.0.0-without-\$id.json" "$specs/3.0.0.json"
            echo "$ASYNCAPI_SPECS_VERSION" > "$specs/VERSION"
            rm -rf "$tmp"
        else
            echo "setup: npm not found: the AsyncAPI document cannot be validated as a whole"
        fi
    fi
fi
