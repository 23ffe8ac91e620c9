#!/bin/sh
# Fetches the mock's third-party browser code into its static files (run by
# scripts/setup.sh, and by cloud_mock/setup.py when a wheel is built without them; safe to
# run again: it fetches only what is missing or of another version). The browser loads it
# from the mock, never from a CDN. Each package is pinned by version and by the tarball's
# sha512 as the npm registry lists it (`npm view PACKAGE@VERSION dist.integrity`), and its
# licence is copied beside it.
#   - zxing-wasm (MIT): zxing-cpp, the QR decoder the device uses too, built to
#     WebAssembly: the cameras page's "Scan label" (console/static/vendor/).
#   - hls.js (Apache-2.0), its light build: plays the archive's HLS playlists in browsers
#     without HLS of their own (Chromium and Safari have it; Firefox has not). Loaded only
#     when a browser needs it (console/static/vendor/).
#   - swagger-ui-dist (Apache-2.0): the renderer of the mock's /docs, the OpenAPI document
#     in a browser (static/apidocs/).
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
vendor="$here/static/vendor"
apidocs="$here/../static/apidocs"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# needed STAMP PACKAGE@VERSION FILE...: false when STAMP names that version and every
# FILE is there.
needed() {
    stamp="$1" want="$2"
    shift 2
    [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] && return 0
    for file in "$@"; do
        [ -f "$file" ] || return 0
    done
    return 1
}

# fetch PACKAGE@VERSION INTEGRITY WHAT: npm-packs the tarball into $tmp/PACKAGE/ and
# checks it against its pinned sha512.
fetch() {
    if ! command -v npm >/dev/null 2>&1; then
        echo "vendor.sh: npm is needed to fetch $1 ($3): apt-get install npm" >&2
        exit 1
    fi
    echo "setup: fetching $1 ($3) with npm"
    mkdir -p "$tmp/${1%@*}"
    (cd "$tmp/${1%@*}" && npm pack --silent "$1" >/dev/null)
    tarball="$(ls "$tmp/${1%@*}"/*.tgz)"
    got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [ "$got" != "$2" ]; then
        echo "setup: $1 does not match its pinned sha512 (got $got)" >&2
        exit 1
    fi
}

ZXING="zxing-wasm@3.1.6"
ZXING_INTEGRITY="sha512-mU7UNuvl+hOT+nlSOQTMHZ2tM8lRMsbjDIp5IO/+HmBl/FOq77q0OSZPJ3cm42A9c1MKU6Uve67FiGdkhsrT9g=="
if needed "$vendor/VERSION.zxing-wasm" "$ZXING" \
    "$vendor/zxing-reader.js" "$vendor/zxing_reader.wasm"; then
    fetch "$ZXING" "$ZXING_INTEGRITY" "the console's QR decoder"
    d="$tmp/zxing-wasm"
    tar -xzf "$d"/*.tgz -C "$d" package/LICENSE package/dist/iife/reader/index.js \
        package/dist/reader/zxing_reader.wasm
    mkdir -p "$vendor"
    cp "$d/package/dist/iife/reader/index.js" "$vendor/zxing-reader.js"
    cp "$d/package/dist/reader/zxing_reader.wasm" "$vendor/zxing_reader.wasm"
    cp "$d/package/LICENSE" "$vendor/zxing-wasm.LICENSE"
    echo "$ZXING" > "$vendor/VERSION.zxing-wasm"
fi

HLSJS="hls.js@1.7.4"
HLSJS_INTEGRITY="sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg=="
if needed "$vendor/VERSION.hls.js" "$HLSJS" "$vendor/hls.light.min.js"; then
    fetch "$HLSJS" "$HLSJS_INTEGRITY" "the archive player for browsers without HLS"
    d="$tmp/hls.js"
    tar -xzf "$d"/*.tgz -C "$d" package/LICENSE package/dist/hls.light.min.js
    mkdir -p "$vendor"
    cp "$d/package/dist/hls.light.min.js" "$vendor/hls.light.min.js"
    cp "$d/package/LICENSE" "$vendor/hls.js.LICENSE"
    echo "$HLSJS" > "$vendor/VERSION.hls.js"
fi
# The stamp of vendor.sh before it fetched more than one package.
rm -f "$vendor/VERSION"

SWAGGER_UI="swagger-ui-dist@5.35.0"
SWAGGER_UI_INTEGRITY="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
# Its stamp: the version alone (scripts/setup.sh wrote it so before vendor.sh fetched it).
if needed "$apidocs/VERSION" "${SWAGGER_UI#*@}" \
    "$apidocs/swagger-ui-bundle.js" "$apidocs/swagger-ui.css"; then
    fetch "$SWAGGER_UI" "$SWAGGER_UI_INTEGRITY" "the renderer of the mock's /docs"
    d="$tmp/swagger-ui-dist"
    tar -xzf "$d"/*.tgz -C "$d" package/LICENSE package/swagger-ui-bundle.js \
        package/swagger-ui.css
    mkdir -p "$apidocs"
    cp "$d/package/swagger-ui-bundle.js" "$d/package/swagger-ui.css" "$d/package/LICENSE" \
        "$apidocs/"
    echo "${SWAGGER_UI#*@}" > "$apidocs/VERSION"
fi
