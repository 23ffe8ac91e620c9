#!/bin/sh
# Fetches the console's QR decoder into static/vendor/ (run by scripts/setup.sh; safe to
# run again). zxing-wasm (MIT licence, copied beside it) is zxing-cpp, the decoder the
# device uses too, built to WebAssembly. The browser loads it from the mock, never from a
# CDN. Pinned by version and by the tarball's sha512 as the npm registry lists it.
set -eu

PACKAGE="zxing-wasm@3.1.6"
INTEGRITY="sha512-mU7UNuvl+hOT+nlSOQTMHZ2tM8lRMsbjDIp5IO/+HmBl/FOq77q0OSZPJ3cm42A9c1MKU6Uve67FiGdkhsrT9g=="

vendor="$(cd "$(dirname "$0")" && pwd)/static/vendor"
if [ "$(cat "$vendor/VERSION" 2>/dev/null || true)" = "$PACKAGE" ]; then
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching $PACKAGE (the console's QR decoder) with npm"
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
tarball="$(ls "$tmp"/*.tgz)"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
    echo "setup: $PACKAGE does not match its pinned sha512 (got $got)" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/LICENSE package/dist/iife/reader/index.js \
    package/dist/reader/zxing_reader.wasm
mkdir -p "$vendor"
cp "$tmp/package/dist/iife/reader/index.js" "$vendor/zxing-reader.js"
cp "$tmp/package/dist/reader/zxing_reader.wasm" "$vendor/zxing_reader.wasm"
cp "$tmp/package/LICENSE" "$vendor/zxing-wasm.LICENSE"
echo "$PACKAGE" > "$vendor/VERSION"
