#!/bin/sh
# A vulnerability audit that says what it checked and what it could not: it never reports
# "no known vulnerabilities" for something it had no advisory data for.
#
#   scripts/audit.sh [--no-update] [--dpkg-status FILE] [--all-installed]
#                    [--debian-only | --requirements FILE] [--pip-audit CMD]
#
# 1. Debian: the packages the camagent .deb runs on (its Depends and Recommends in
#    packaging/debian/control, and what they depend on), as installed on this machine or
#    in another system's dpkg status file (--dpkg-status, e.g. a device image's
#    var/lib/dpkg/status), against Debian's security archive (the suite ending in
#    -security in apt's sources): a package older than a version published there has a
#    vulnerability that Debian has fixed. Vulnerabilities Debian has not fixed yet (no
#    DSA/DLA: "no-dsa", "postponed") are only in its security tracker, which this check
#    does not reach. As root, apt's lists are refreshed first (--no-update: not).
#    --all-installed: every installed package, not only the .deb's.
# 2. PyPI: the project's virtual environment (.venv; --requirements FILE: that file's
#    pins instead) with pip-audit, when it is installed (--pip-audit CMD, else
#    $PIP_AUDIT, else pip-audit on PATH or in .venv). A dependency pip-audit could not
#    look up counts as NOT CHECKED, never as clean.
#
# Exit status: 0 no known vulnerability, and everything was checked; 1 known
# vulnerabilities (listed); 2 usage; 3 nothing found, but something could not be checked
# (listed with the reason). POSIX sh; shellcheck and dash clean.

set -eu

usage() {
	sed -n '2,26s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

say() {
	printf '%s\n' "$*"
}

cd "$(dirname "$0")/.."

UPDATE=1
STATUS_FILE=/var/lib/dpkg/status
ALL_INSTALLED=0
DEBIAN_ONLY=0
REQUIREMENTS=
PIP_AUDIT_CMD=${PIP_AUDIT:-}
while [ $# -gt 0 ]; do
	case $1 in
	--no-update) UPDATE=0 ;;
	--all-installed) ALL_INSTALLED=1 ;;
	--debian-only) DEBIAN_ONLY=1 ;;
	--dpkg-status | --requirements | --pip-audit)
		if [ $# -lt 2 ] || [ -z "$2" ]; then usage; fi
		case $1 in
		--dpkg-status) STATUS_FILE=$2 ;;
		--requirements) REQUIREMENTS=$2 ;;
		--pip-audit) PIP_AUDIT_CMD=$2 ;;
		esac
		shift
		;;
	-h | --help) usage ;;
	*)
		printf 'audit: unknown option: %s\n' "$1" >&2
		usage
		;;
	esac
	shift
done
if [ "$DEBIAN_ONLY" = 1 ] && [ -n "$REQUIREMENTS" ]; then
	printf 'audit: --debian-only and --requirements do not go together\n' >&2
	exit 2
fi

VULNERABLE=0
NOT_CHECKED=
TMP=$(mktemp -d "${TMPDIR:-/tmp}/camagent-audit.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

not_checked() {
	say "NOT CHECKED  $*"
	NOT_CHECKED="$NOT_CHECKED${NOT_CHECKED:+; }${1%%:*}"
}

# --- Debian ----------------------------------------------------------------------------

# The .deb's Depends and Recommends, names only (no versions, no ${…} substitutions).
deb_roots() {
	awk '
		/^Package: / { ours = ($2 == "camagent") }
		ours && /^(Depends|Recommends):/ { field = 1; sub(/^[A-Za-z]+:/, ""); print; next }
		ours && field && /^[ \t]/ { print; next }
		{ field = 0 }
	' packaging/debian/control | tr ',|' '\n' |
		sed -e 's/([^)]*)//g' -e 's/\[[^]]*\]//g' -e 's/[$][{][^}]*[}]//g' -e 's/[ \t]//g' |
		grep -v '^$' | sort -u
}

installed_names() {
	awk -v RS= '/\nStatus: install ok installed/ { sub(/^Package: /, ""); sub(/\n.*/, ""); print }' \
		"$STATUS_FILE" | sort -u
}

# pkg installed security-version suite: the highest version each package has in a
# -security suite (apt lists a version table highest first).
security_candidates() {
	awk '
		/^[^ ]/ { pkg = $1; sub(/:$/, "", pkg); installed = ""; version = ""; done = 0; next }
		/^  Installed: / { installed = $2; next }
		/^ [*][*][*] / { version = $2; next }
		/^     [^ ]+ -?[0-9]+$/ { version = $1; next }
		/^        -?[0-9]+ / {
			if (done || installed == "" || installed == "(none)") next
			for (i = 3; i <= NF; i++) if ($i ~ /-security\//) {
				suite = $i; sub(/\/.*/, "", suite)
				print pkg, installed, version, suite
				done = 1
				break
			}
		}
	'
}

audit_debian() {
	say "== Debian packages, against Debian's security archive"
	if ! command -v apt-cache >/dev/null 2>&1; then
		not_checked "Debian: no apt-cache on this machine"
		return 0
	fi
	if [ ! -r "$STATUS_FILE" ]; then
		not_checked "Debian: cannot read the dpkg status file $STATUS_FILE"
		return 0
	fi
	if [ "$UPDATE" = 1 ] && [ "$(id -u)" = 0 ]; then
		apt-get update -qq >"$TMP/update.log" 2>&1 ||
			say "note: apt-get update failed (the lists below are the previous ones): $(tail -n 1 "$TMP/update.log")"
	fi
	if ! apt-cache policy 2>/dev/null | grep -q -- '-security/'; then
		not_checked "Debian: apt's sources have no -security suite (e.g. deb.debian.org/debian-security <release>-security), so there is nothing to compare with"
		return 0
	fi
	lists=$(apt-config shell DIR Dir::State::Lists/d | sed -n "s/^DIR='\(.*\)'$/\1/p")
	for release in "${lists:-/var/lib/apt/lists}"/*security*_InRelease; do
		[ -r "$release" ] || continue
		say "security archive: $(basename "$release" _InRelease), $(sed -n 's/^Date: //p' "$release" | head -n 1)"
	done
	if [ "$ALL_INSTALLED" = 1 ]; then
		installed_names >"$TMP/packages"
		what="every installed package"
	else
		# shellcheck disable=SC2046 # one name a word
		apt-cache -o Dir::State::status="$STATUS_FILE" depends --recurse --installed \
			--no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
			$(deb_roots) 2>/dev/null | grep -v -e '^ ' -e '^<' | sort -u >"$TMP/packages"
		what="the camagent .deb's dependencies"
	fi
	# shellcheck disable=SC2046 # one name a word
	apt-cache -o Dir::State::status="$STATUS_FILE" policy $(cat "$TMP/packages") 2>/dev/null |
		security_candidates >"$TMP/candidates"
	checked=$(installed_names | grep -c -x -F -f "$TMP/packages" || true)
	if [ "$checked" = 0 ]; then
		not_checked "Debian: none of $what is installed (status $STATUS_FILE)"
		return 0
	fi
	found=0
	while read -r pkg installed fixed suite; do
		if dpkg --compare-versions "$installed" lt "$fixed"; then
			say "VULNERABLE   $pkg $installed: Debian fixed a vulnerability in $fixed ($suite)"
			found=$((found + 1))
		fi
	done <"$TMP/candidates"
	VULNERABLE=$((VULNERABLE + found))
	say "Debian: $checked installed packages checked ($what, status $STATUS_FILE): $found with a published security fix not installed"
	say "Debian: vulnerabilities Debian has not fixed are not covered (its security tracker is not reachable from here)"
}

# --- PyPI --------------------------------------------------------------------------------

audit_pypi() {
	say "== Python packages (PyPI), with pip-audit"
	if [ -z "$PIP_AUDIT_CMD" ]; then
		if command -v pip-audit >/dev/null 2>&1; then
			PIP_AUDIT_CMD=pip-audit
		elif [ -x .venv/bin/pip-audit ]; then
			PIP_AUDIT_CMD=.venv/bin/pip-audit
		fi
	fi
	if [ -z "$PIP_AUDIT_CMD" ]; then
		not_checked "PyPI: pip-audit is not installed (it is a tool, not a dependency: install it in a venv of its own, then --pip-audit PATH); no other PyPI advisory data is on this machine"
		return 0
	fi
	if [ -n "$REQUIREMENTS" ]; then
		[ -r "$REQUIREMENTS" ] || {
			printf 'audit: cannot read %s\n' "$REQUIREMENTS" >&2
			exit 2
		}
		cp "$REQUIREMENTS" "$TMP/requirements.txt"
		what=$REQUIREMENTS
	elif [ -x .venv/bin/python ]; then
		.venv/bin/python -m pip freeze --exclude-editable --quiet 2>/dev/null |
			grep -v -e '^#' -e '^-e ' -e ' @ ' >"$TMP/requirements.txt" || true
		what="the project's .venv"
	else
		not_checked "PyPI: no .venv here (scripts/setup.sh makes it) and no --requirements FILE"
		return 0
	fi
	set +e
	$PIP_AUDIT_CMD -r "$TMP/requirements.txt" --no-deps --disable-pip --progress-spinner off \
		-f json -o "$TMP/pip-audit.json" >"$TMP/pip-audit.out" 2>&1
	set -e
	if [ ! -s "$TMP/pip-audit.json" ]; then
		not_checked "PyPI: pip-audit gave no report: $(tail -n 1 "$TMP/pip-audit.out")"
		return 0
	fi
	python3 - "$TMP/pip-audit.json" "$what" >"$TMP/pypi" <<'EOF'
import json
import sys

report = json.load(open(sys.argv[1], encoding="utf-8"))
deps = report.get("dependencies", []) if isinstance(report, dict) else report
vulnerable = skipped = 0
reasons = set()
for dep in deps:
    name, version = dep.get("name", "?"), dep.get("version", "")
    if "skip_reason" in dep:
        skipped += 1
        reason = str(dep.get("skip_reason") or "skipped")
        reasons.add(reason.split(":")[0])
        print(f"SKIPPED      {name}: {reason}")
        continue
    for vuln in dep.get("vulns", []):
        vulnerable += 1
        fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
        print(f"VULNERABLE   {name} {version}: {vuln.get('id', '?')} (fixed in {fixed})")
checked = len(deps) - skipped
print(f"COUNT {vulnerable} {skipped}")
print(f"PyPI: {checked} of {len(deps)} packages of {sys.argv[2]} checked: {vulnerable} known vulnerabilities")
if reasons:
    print("WHY " + "; ".join(sorted(reasons)))
EOF
	grep -v -e '^COUNT ' -e '^WHY ' "$TMP/pypi"
	counts=$(sed -n 's/^COUNT //p' "$TMP/pypi")
	VULNERABLE=$((VULNERABLE + ${counts% *}))
	if [ "${counts#* }" != 0 ]; then
		not_checked "PyPI: ${counts#* } packages could not be looked up ($(sed -n 's/^WHY //p' "$TMP/pypi")); pip-audit asks https://pypi.org/pypi/NAME/VERSION/json or osv.dev, which a network that reaches only the package index's /simple/ and its files does not answer"
	fi
}

audit_debian
[ "$DEBIAN_ONLY" = 1 ] || audit_pypi

say "=="
if [ "$VULNERABLE" -gt 0 ]; then
	say "audit: $VULNERABLE packages with known vulnerabilities${NOT_CHECKED:+ (and NOT CHECKED: $NOT_CHECKED)}"
	exit 1
fi
if [ -n "$NOT_CHECKED" ]; then
	say "audit: no known vulnerability in what was checked, but this is no clean audit: NOT CHECKED: $NOT_CHECKED"
	exit 3
fi
say "audit: no known vulnerability in anything checked"
exit 0
