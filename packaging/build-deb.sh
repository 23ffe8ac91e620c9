#!/bin/sh
# Builds the Debian package from this checkout: packaging/build-deb.sh [OUTDIR]
# Needs: dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
set -eu

here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "${1:-$here/dist}"
out="$(cd "${1:-$here/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A clean source tree: what git tracks, with packaging/debian as debian/.
mkdir "$work/camagent"
(cd "$here" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$here" && xargs -0 cp --parents -t "$work/camagent")
cp -r "$here/packaging/debian" "$work/camagent/debian"
cp "$here/packaging/camagent.service" "$work/camagent/debian/camagent.service"

# dpkg-buildpackage must find the system Python (with dh-python), not a venv or pyenv.
cd "$work/camagent"
PATH="/usr/sbin:/usr/bin:/sbin:/bin" dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    exit 1
}
cp "$work"/camagent_*_all.deb "$out/"
ls "$out"/camagent_*_all.deb
