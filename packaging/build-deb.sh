#!/bin/sh
# Builds the Debian package from this checkout: packaging/build-deb.sh [OUTDIR]
# Needs: dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
set -eu

here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "${1:-$here/dist}"
out="$(cd "${1:-$here/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A clean source tree: what git tracks (or everything but the venv, outside a git checkout,
# as in the test containers), with packaging/debian as debian/.
mkdir "$work/camagent"
if command -v git >/dev/null 2>&1 && git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$here" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$here" && xargs -0 cp -P --parents -t "$work/camagent")
else
    (cd "$here" && find . -path ./.venv -prune -o -path ./.git -prune -o -path ./dist -prune \
        -o ! -type d -print0) | (cd "$here" && xargs -0 cp -P --parents -t "$work/camagent")
fi
cp -r "$here/packaging/debian" "$work/camagent/debian"
cp "$here/packaging/camagent.service" "$work/camagent/debian/camagent.service"

# pyproject.toml names its license as an SPDX string (PEP 639), which setuptools reads
# from version 77 on.  Debian 13's setuptools (78) takes it as it is; Debian 12's (66)
# refuses it, so its copy of the tree gets the older table form, which says the same.
if ! PATH="/usr/sbin:/usr/bin:/sbin:/bin" python3 -c '
import sys, setuptools
sys.exit(int(setuptools.__version__.split(".")[0]) < 77)'; then
    sed -i 's/^license = \("[^"]*"\)$/license = { text = \1 }/' "$work/camagent/pyproject.toml"
    grep -q '^license = { text = ' "$work/camagent/pyproject.toml" || {
        echo "build-deb.sh: no license = \"…\" line in pyproject.toml to rewrite" >&2
        exit 1
    }
fi

# dpkg-buildpackage must find the system Python (with dh-python), not a venv or pyenv.
cd "$work/camagent"
PATH="/usr/sbin:/usr/bin:/sbin:/bin" dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    exit 1
}
cp "$work"/camagent_*_all.deb "$out/"
ls "$out"/camagent_*_all.deb
