#!/bin/sh
# Fetches the console's third-party browser code into static/vendor/ (run by
# scripts/setup.sh; safe to run again). The browser loads it from the mock, never from a
# CDN. Each package is pinned by version and by the tarball's sha512 as the npm registry
# lists it (`npm view PACKAGE@VERSION dist.integrity`), and its licence is copied beside it.
#   - zxing-wasm (MIT): zxing-cpp, the QR decoder the device uses too, built to
#     WebAssembly: the cameras page's "Scan label".
#   - hls.js (Apache-2.0), its light build: plays the archive's HLS playlists in browsers
#     without HLS of their own (Chromium and Safari have it; Firefox has not). Loaded only
#     when a browser needs it.
set -eu

vendor="$(cd "$(dirname "$0")" && pwd)/static/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# needed PACKAGE@VERSION: false when static/vendor/ already holds that version.
needed() {
    [ "$(cat "$vendor/VERSION.${1%@*}" 2>/dev/null || true)" != "$1" ]
}

# fetch PACKAGE@VERSION INTEGRITY WHAT: npm-packs the tarball into $tmp/PACKAGE/ and
# checks it against its pinned sha512.
fetch() {
    echo "setup: fetching $1 ($3) with npm"
    mkdir -p "$tmp/${1%@*}"
    (cd "$tmp/${1%@*}" && npm pack --silent "$1" >/dev/null)
    tarball="$(ls "$tmp/${1%@*}"/*.tgz)"
    got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [ "$got" != "$2" ]; then
        echo "setup: $1 does not match its pinned sha512 (got $got)" >&2
        exit 1
    fi
    mkdir -p "$vendor"
}

ZXING="zxing-wasm@3.1.6"
ZXING_INTEGRITY="sha512-mU7UNuvl+hOT+nlSOQTMHZ2tM8lRMsbjDIp5IO/+HmBl/FOq77q0OSZPJ3cm42A9c1MKU6Uve67FiGdkhsrT9g=="
if needed "$ZXING"; then
    fetch "$ZXING" "$ZXING_INTEGRITY" "the console's QR decoder"
    d="$tmp/zxing-wasm"
    tar -xzf "$d"/*.tgz -C "$d" package/LICENSE package/dist/iife/reader/index.js \
        package/dist/reader/zxing_reader.wasm
    cp "$d/package/dist/iife/reader/index.js" "$vendor/zxing-reader.js"
    cp "$d/package/dist/reader/zxing_reader.wasm" "$vendor/zxing_reader.wasm"
    cp "$d/package/LICENSE" "$vendor/zxing-wasm.LICENSE"
    echo "$ZXING" > "$vendor/VERSION.zxing-wasm"
fi

HLSJS="hls.js@1.7.4"
HLSJS_INTEGRITY="sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg=="
if needed "$HLSJS"; then
    fetch "$HLSJS" "$HLSJS_INTEGRITY" "the archive player for browsers without HLS"
    d="$tmp/hls.js"
    tar -xzf "$d"/*.tgz -C "$d" package/LICENSE package/dist/hls.light.min.js
    cp "$d/package/dist/hls.light.min.js" "$vendor/hls.light.min.js"
    cp "$d/package/LICENSE" "$vendor/hls.js.LICENSE"
    echo "$HLSJS" > "$vendor/VERSION.hls.js"
fi
# The stamp of vendor.sh before it fetched more than one package.
rm -f "$vendor/VERSION"
