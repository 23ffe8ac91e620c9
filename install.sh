#!/bin/sh
# camagent one-line installer.
#
#   curl -fsSL <cloud>/install.sh | sh -s -- [--nvr] [--token-file F] [--cloud URL] [--dry-run]
#   curl -fsSL <cloud>/install.sh | sh -s -- --uninstall [--purge] [--dry-run]
#
# A cloud fills in served_values() and served_ca_pem() when it serves this file
# (cloud_mock/installer.py does it for the mock): where the package is and its SHA-256,
# the CA its TLS certificate chains to, and the SHA-256 of its token-signing key.  As
# committed in the repository those are placeholders, and the script refuses to install.
#
# Everything is inside functions and `main` is called on the last line, so a download
# that is cut off runs nothing.  POSIX sh; checked with shellcheck and dash.
#
# The embedded systemd unit (unit_text, for installs into a virtual environment) is the
# repository's packaging/camagent.service, filled in by the serving cloud as well.
#
# Environment:
#   CAMAGENT_TOKEN         the token to link with (instead of --token-file); unlike a
#                          command-line argument, it is not readable by other local users.
#   CAMAGENT_INSTALL_WAIT  seconds to wait for the service, the activation code and the
#                          connection (default 30).
#   CAMAGENT_INSTALL_ROOT  for tests: a directory put in front of every path on the target
#                          this script reads or writes (/etc/camagent, /opt/camagent, the
#                          systemd unit, /etc/os-release).  Package managers, systemctl and
#                          camagent still act on this machine.

# --- values filled in by the cloud that serves this script -----------------------------

served_values() {
	CLOUD_URL="@CLOUD_URL@"
	DEB_URL="@DEB_URL@"
	DEB_SHA256="@DEB_SHA256@"
	WHEEL_URL="@WHEEL_URL@"
	WHEEL_SHA256="@WHEEL_SHA256@"
	KEYS_SHA256="@KEYS_SHA256@"
}

served_ca_pem() {
	cat <<'CAMAGENT_CA_PEM'
@CA_PEM@
CAMAGENT_CA_PEM
}

# --- constants -----------------------------------------------------------------------------

constants() {
	SERVICE=camagent
	ETC_DIR=/etc/camagent
	CONFIG_FILE=$ETC_DIR/agent.toml
	CA_FILE=$ETC_DIR/ca.pem
	KEYS_FILE=$ETC_DIR/cloud-keys.pem
	STATE_DIR=/var/lib/camagent
	VENV_DIR=/opt/camagent
	VENV_MARKER=$VENV_DIR/.camagent-wheel
	UNIT_FILE=/etc/systemd/system/camagent.service
	LINK_FILE=/usr/local/bin/camagent
	SUPPORTED_ARCHES="x86_64, aarch64 and armv7l"
}

usage() {
	cat <<'EOF'
Install camagent and connect this machine to the cloud that served this script.

  curl -fsSL <cloud>/install.sh | sh -s -- [OPTIONS]

  --nvr          set this machine up as a virtual NVR (default: a camera); prints the
                 activation code to enter in the cloud, its URL and a QR code
  --token-file F link right away with the token in file F (- or /dev/stdin: read
                 it from standard input, when the script is not piped in): an NVR
                 registration token (with --nvr) or a camera access token; waits
                 until the device is connected.  CAMAGENT_TOKEN=T in the environment
                 does the same
  --token T      the same, from the command line; deprecated: every local user can
                 read a command line (/proc/PID/cmdline), so it warns
  --cloud URL    the cloud the device connects to (default: the cloud that served this
                 script); its token-signing key must match the one pinned in the script
  --dry-run      print every action, change nothing
  --uninstall    stop and remove camagent (keeps /etc/camagent and the device state)
  --purge        with --uninstall: remove configuration and state as well
  -h, --help     this text

Debian and Ubuntu get the Debian package; other distributions a Python virtual
environment in /opt/camagent (needs python3 >= 3.11).  Needs root, systemd and curl.
EOF
}

# --- messages and helpers ------------------------------------------------------------------

say() {
	printf 'camagent-install: %s\n' "$*"
}

warn() {
	printf 'camagent-install: %s\n' "$*" >&2
}

die() {
	warn "error: $*"
	exit 1
}

usage_error() {
	warn "$*"
	usage >&2
	exit 2
}

# A command line as it would be typed; the token given with --token shows as <token>.
shell_quote() {
	sq_out=
	for sq_arg in "$@"; do
		if [ -n "$TOKEN" ] && [ "$sq_arg" = "$TOKEN" ]; then
			sq_arg='<token>'
		else
			case $sq_arg in
			'' | *[!A-Za-z0-9_./:=@%+,-]*)
				sq_arg="'$(printf '%s' "$sq_arg" | sed "s/'/'\\\\''/g")'"
				;;
			esac
		fi
		sq_out="$sq_out${sq_out:+ }$sq_arg"
	done
	printf '%s' "$sq_out"
}

# Run a command that changes the system, or only print it with --dry-run.
run() {
	if [ "$DRY_RUN" = 1 ]; then
		say "would run: $(shell_quote "$@")"
		return 0
	fi
	say "+ $(shell_quote "$@")"
	CHANGES=$((CHANGES + 1))
	"$@" || die "failed with status $?: $(shell_quote "$@")"
}

# Run a command that changes the system and return its status (print it with --dry-run).
run_try() {
	if [ "$DRY_RUN" = 1 ]; then
		say "would run: $(shell_quote "$@")"
		return 0
	fi
	say "+ $(shell_quote "$@")"
	CHANGES=$((CHANGES + 1))
	"$@"
}

have() {
	command -v "$1" >/dev/null 2>&1
}

sha256_of() {
	s_out=$(sha256sum <"$1") || die "cannot compute the SHA-256 of $1"
	printf '%s' "${s_out%% *}"
}

# Download URL to FILE over https, trusting the cloud's CA.
fetch() {
	if [ -n "$CA_BUNDLE" ]; then
		curl -fsSL --proto '=https' --retry 2 --cacert "$CA_BUNDLE" -o "$2" "$1"
	else
		curl -fsSL --proto '=https' --retry 2 -o "$2" "$1"
	fi
}

# put_file SRC DEST MODE [backup]: make $ROOT$DEST a copy of SRC unless it is one
# already; FILE_CHANGED says whether it did (or would, with --dry-run).
put_file() {
	pf_dest=$ROOT$2
	FILE_CHANGED=0
	if [ -f "$pf_dest" ] && [ "$(sha256_of "$1")" = "$(sha256_of "$pf_dest")" ]; then
		say "$2 is up to date"
		return 0
	fi
	FILE_CHANGED=1
	if [ "$DRY_RUN" = 1 ]; then
		say "would write $2 (mode $3)"
		return 0
	fi
	mkdir -p "${pf_dest%/*}" || die "cannot create ${2%/*}"
	if [ -f "$pf_dest" ] && [ "${4:-}" = backup ]; then
		pf_backup=$pf_dest.bak-$(date +%Y%m%d-%H%M%S)
		[ ! -e "$pf_backup" ] || pf_backup=$pf_backup.$$
		cp -p "$pf_dest" "$pf_backup" || die "cannot back up $2"
		say "kept the previous $2 as ${pf_backup#"$ROOT"}"
	fi
	if ! { cp "$1" "$pf_dest.new" && chmod "$3" "$pf_dest.new" && mv -f "$pf_dest.new" "$pf_dest"; }; then
		die "cannot write $2"
	fi
	CHANGES=$((CHANGES + 1))
	say "wrote $2"
}

# Print one field (dotted path) of a JSON document on stdin: strings bare, others as JSON.
json_field() {
	"$PY" -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print(value if isinstance(value, str) else json.dumps(value))' "$1" 2>/dev/null
}

cli() {
	"$CAMAGENT" --config "$ROOT$CONFIG_FILE" "$@"
}

status_field() {
	if have "$PY"; then
		cli status --json 2>/dev/null | json_field "$1" || true
	fi
}

# --- arguments and checks ------------------------------------------------------------------

parse_args() {
	NVR=0 TOKEN=${CAMAGENT_TOKEN:-} TOKEN_FILE='' ARG_TOKEN='' CLOUD_OVERRIDE=''
	DRY_RUN=0 UNINSTALL=0 PURGE=0
	while [ $# -gt 0 ]; do
		case $1 in
		--nvr) NVR=1 ;;
		--token | --token-file | --cloud)
			if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "$1 needs a value"; fi
			set_option "$1" "$2"
			shift
			;;
		--token=* | --token-file=* | --cloud=*)
			if [ -z "${1#*=}" ]; then usage_error "${1%%=*} needs a value"; fi
			set_option "${1%%=*}" "${1#*=}"
			;;
		--dry-run) DRY_RUN=1 ;;
		--uninstall) UNINSTALL=1 ;;
		--purge) PURGE=1 ;;
		-h | --help)
			usage
			exit 0
			;;
		*) usage_error "unknown option: $1" ;;
		esac
		shift
	done
	if [ "$UNINSTALL" = 1 ] && { [ "$NVR" = 1 ] || [ -n "$ARG_TOKEN$TOKEN_FILE" ] || [ -n "$CLOUD_OVERRIDE" ]; }; then
		usage_error "--uninstall takes no other options than --purge and --dry-run"
	fi
	[ "$UNINSTALL" = 1 ] || read_token
	if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
		usage_error "--purge goes with --uninstall"
	fi
	case $TOKEN in
	*[!A-Za-z0-9._~+/=-]*) usage_error "$TOKEN_FROM: that is not a token (unexpected characters)" ;;
	esac
	case $CLOUD_OVERRIDE in
	'') ;;
	http://*) usage_error "--cloud: the cloud must be reached over https, not $CLOUD_OVERRIDE" ;;
	https://*) ;;
	*://*) usage_error "--cloud: not an https URL: $CLOUD_OVERRIDE" ;;
	*) CLOUD_OVERRIDE=https://$CLOUD_OVERRIDE ;;
	esac
	cl_authority=${CLOUD_OVERRIDE#https://}
	cl_authority=${cl_authority%%/*}
	case $cl_authority in
	*@*)
		# Never echoed: what stands before the @ may well be a password.
		usage_error "--cloud: a URL with a user name or password (user@host) is not accepted; give the cloud's https://host[:port] only (the device authenticates with its token)"
		;;
	esac
	case $CLOUD_OVERRIDE in
	*[!]A-Za-z0-9_.:/%+~[-]* | https:// | https:///*)
		usage_error "--cloud: not a usable URL: $CLOUD_OVERRIDE"
		;;
	esac
	CLOUD_OVERRIDE=${CLOUD_OVERRIDE%/}
}

set_option() {
	case $1 in
	--token) ARG_TOKEN=$2 ;;
	--token-file) TOKEN_FILE=$2 ;;
	--cloud) CLOUD_OVERRIDE=$2 ;;
	esac
}

# The token comes from one place: --token-file, CAMAGENT_TOKEN or (deprecated) --token.
read_token() {
	TOKEN_FROM=CAMAGENT_TOKEN
	rt_sources=0
	[ -z "${CAMAGENT_TOKEN:-}" ] || rt_sources=$((rt_sources + 1))
	[ -z "$TOKEN_FILE" ] || rt_sources=$((rt_sources + 1))
	[ -z "$ARG_TOKEN" ] || rt_sources=$((rt_sources + 1))
	if [ "$rt_sources" -gt 1 ]; then
		usage_error "give the token one way only: --token-file, CAMAGENT_TOKEN or --token"
	fi
	if [ -n "$ARG_TOKEN" ]; then
		warn "warning: --token puts the token on the command line, where every local user can read it (/proc/PID/cmdline); use CAMAGENT_TOKEN=... or --token-file next time"
		TOKEN=$ARG_TOKEN
		TOKEN_FROM=--token
	elif [ -n "$TOKEN_FILE" ]; then
		TOKEN_FROM=--token-file
		[ "$TOKEN_FILE" != - ] || TOKEN_FILE=/dev/stdin
		[ -r "$TOKEN_FILE" ] || usage_error "--token-file: cannot read $TOKEN_FILE"
		# The first line, without blanks (a file written by an editor ends in a newline).
		TOKEN=$(head -n 1 -- "$TOKEN_FILE" | tr -d ' \t\r')
		[ -n "$TOKEN" ] || usage_error "--token-file: $TOKEN_FILE holds no token"
	fi
}

# The one-liner again, as root: the same cloud, its CA (a copy of the one served inside
# this script) and these arguments; sudo keeps CAMAGENT_TOKEN only when asked to.
root_hint() {
	rh_url=$(
		served_values
		printf '%s' "$CLOUD_URL"
	)
	case $rh_url in @*@) rh_url='<cloud>' ;; esac
	rh_ca=
	if served_ca_pem | grep -q 'BEGIN CERTIFICATE'; then
		if rh_file=$(mktemp "${TMPDIR:-/tmp}/camagent-ca.XXXXXX") && served_ca_pem >"$rh_file"; then
			rh_ca=" --cacert $(shell_quote "$rh_file")"
		fi
	fi
	rh_env=
	[ -z "${CAMAGENT_TOKEN:-}" ] || rh_env=' --preserve-env=CAMAGENT_TOKEN'
	printf 'curl -fsSL%s %s/install.sh | sudo%s sh -s --%s%s' \
		"$rh_ca" "$(shell_quote "$rh_url")" "$rh_env" "${ARGS_QUOTED:+ }" "$ARGS_QUOTED"
}

check_root() {
	if [ "$(id -u)" != 0 ]; then
		if [ "$DRY_RUN" = 1 ]; then
			warn "note: not running as root; a real run needs root (sudo sh)"
		else
			die "this installer must run as root: $(root_hint)"
		fi
	fi
}

check_served() {
	case $CLOUD_URL in
	@*@)
		die "this script must be downloaded from a cloud: curl -fsSL <cloud>/install.sh | sh"
		;;
	esac
	[ -n "$KEYS_SHA256" ] || die "this script carries no fingerprint of the cloud's token-signing key: refusing to install"
	if [ -n "$CLOUD_OVERRIDE" ] && [ "$CLOUD_OVERRIDE" != "$CLOUD_URL" ]; then
		say "the device will use the cloud $CLOUD_OVERRIDE (the package comes from $CLOUD_URL)"
		CLOUD_URL=$CLOUD_OVERRIDE
	fi
}

check_arch() {
	ARCH=$(uname -m)
	case $ARCH in
	x86_64 | amd64 | aarch64 | arm64 | armv7l | armv8l) ;;
	*) die "this machine is $ARCH; camagent supports $SUPPORTED_ARCHES only" ;;
	esac
}

# One key of os-release (without quotes), from the target's os-release file.
os_release() {
	for or_file in "$ROOT/etc/os-release" "$ROOT/usr/lib/os-release" /etc/os-release; do
		if [ -r "$or_file" ]; then
			sed -n "s/^$1=//p" "$or_file" | head -n 1 | tr -d "\"'"
			return 0
		fi
	done
}

choose_method() {
	OS_ID=$(os_release ID)
	OS_LIKE=$(os_release ID_LIKE)
	OS_NAME=$(os_release PRETTY_NAME)
	DEBIAN_LIKE=0
	for ch_id in $OS_ID $OS_LIKE; do
		case $ch_id in debian | ubuntu) DEBIAN_LIKE=1 ;; esac
	done
	if [ "$DEBIAN_LIKE" = 1 ] && [ -n "$DEB_URL" ]; then
		METHOD=deb
	elif [ -n "$WHEEL_URL" ]; then
		METHOD=venv
		[ "$DEBIAN_LIKE" = 0 ] || say "this cloud serves no Debian package: installing into a Python virtual environment"
	elif [ "$DEBIAN_LIKE" = 1 ]; then
		die "this cloud serves no package (no Debian package for ${OS_NAME:-this system})"
	elif [ -n "$DEB_URL" ]; then
		die "this cloud serves no package for ${OS_NAME:-this system}: only a Debian package, and this is not Debian or Ubuntu"
	else
		die "this cloud serves no package"
	fi
	have systemctl || die "camagent runs as a systemd service, and this system has no systemctl"
	have sha256sum || die "sha256sum is missing (coreutils): it checks every download"
	if [ "$METHOD" = deb ]; then
		if ! have apt-get || ! have dpkg-query; then
			die "${OS_NAME:-this system} looks like Debian but has no apt-get/dpkg-query"
		fi
		PKG_NAME=${DEB_URL##*/}
		PKG_SHA256=$DEB_SHA256
		PKG_VERSION=${PKG_NAME#camagent_}
		PKG_VERSION=${PKG_VERSION%_*.deb}
		PY=python3
		CAMAGENT=camagent
		say "${OS_NAME:-Debian-like system} on $ARCH: installing the Debian package camagent $PKG_VERSION"
	else
		find_python
		PKG_NAME=${WHEEL_URL##*/}
		PKG_SHA256=$WHEEL_SHA256
		PKG_VERSION=${PKG_NAME#camagent-}
		PKG_VERSION=${PKG_VERSION%%-*}
		CAMAGENT=$ROOT$VENV_DIR/bin/camagent
		say "${OS_NAME:-this system} on $ARCH: installing camagent $PKG_VERSION into $VENV_DIR with $PY"
	fi
	case $PKG_SHA256 in
	'' | *[!0-9a-f]*) die "this script carries no valid SHA-256 for $PKG_NAME: refusing to install" ;;
	esac
}

find_python() {
	PY=
	for fp_candidate in python3 python3.13 python3.12 python3.11; do
		if have "$fp_candidate" &&
			"$fp_candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
			PY=$(command -v "$fp_candidate")
			break
		fi
	done
	if [ -z "$PY" ]; then
		if have python3; then
			fp_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo unknown)
			die "python3 >= 3.11 is missing (python3 here is $fp_version): install python3.11 or newer (with its venv module) and run this again"
		fi
		die "python3 >= 3.11 is missing: install python3.11 or newer (with its venv module) and run this again"
	fi
	"$PY" -c 'import venv, ensurepip' 2>/dev/null ||
		die "$PY has no venv/ensurepip module: install it (e.g. the python3-venv package) and run this again"
}

# --- downloads (all checked before anything is changed) ----------------------------------

make_tmp() {
	TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/camagent-install.XXXXXX") || die "cannot create a temporary directory"
	# apt reads the .deb as its unprivileged _apt user.
	chmod 755 "$TMP_DIR"
	served_ca_pem >"$TMP_DIR/ca.pem"
	if grep -q 'BEGIN CERTIFICATE' "$TMP_DIR/ca.pem"; then
		CA_BUNDLE=$TMP_DIR/ca.pem
	else
		CA_BUNDLE=
	fi
}

cleanup() {
	if [ -n "${TMP_DIR:-}" ] && [ -d "$TMP_DIR" ]; then
		rm -rf "$TMP_DIR"
	fi
}

download_package() {
	if [ "$METHOD" = deb ]; then dp_url=$DEB_URL; else dp_url=$WHEEL_URL; fi
	say "downloading $dp_url"
	PKG_FILE=$TMP_DIR/$PKG_NAME
	fetch "$dp_url" "$PKG_FILE" || die "cannot download $dp_url"
	dp_got=$(sha256_of "$PKG_FILE")
	if [ "$dp_got" != "$PKG_SHA256" ]; then
		die "$PKG_NAME has SHA-256 $dp_got, but the cloud said $PKG_SHA256: refusing to install it"
	fi
	chmod 644 "$PKG_FILE"
	say "$PKG_NAME: SHA-256 verified"
}

# The first key's PEM from GET /v1/keys ({"keys": [{"pem": ...}, ...]}).
first_key_pem() {
	if have python3 && python3 -c 'import json, sys
pem = json.load(open(sys.argv[1], encoding="utf-8"))["keys"][0]["pem"]
sys.stdout.write(pem if isinstance(pem, str) else "")' "$1" 2>/dev/null; then
		return 0
	fi
	# No python3 (a minimal Debian gets it with the package): the first "pem" string with
	# its \n escapes.  Anything unusual changes the bytes, and the pin check refuses them.
	tr '{}' ',,' <"$1" | tr ',' '\n' | sed -n 's/^ *"pem": *"\(.*\)" *$/\1/p' | head -n 1 | {
		IFS= read -r fk_pem || true
		printf '%b' "$fk_pem"
	}
}

download_keys() {
	say "fetching the token-signing key from $CLOUD_URL/v1/keys"
	fetch "$CLOUD_URL/v1/keys" "$TMP_DIR/keys.json" || die "cannot fetch $CLOUD_URL/v1/keys"
	first_key_pem "$TMP_DIR/keys.json" >"$TMP_DIR/cloud-keys.pem"
	grep -q 'BEGIN PUBLIC KEY' "$TMP_DIR/cloud-keys.pem" ||
		die "$CLOUD_URL/v1/keys holds no public key"
	dk_got=$(sha256_of "$TMP_DIR/cloud-keys.pem")
	if [ "$dk_got" != "$KEYS_SHA256" ]; then
		die "the token-signing key of $CLOUD_URL (SHA-256 $dk_got) is not the one this script pins ($KEYS_SHA256): refusing to trust it"
	fi
	say "token-signing key verified against the pinned fingerprint"
}

# --- installing -----------------------------------------------------------------------------

install_deb() {
	id_status=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' camagent 2>/dev/null || true)
	case $id_status in
	"ii |$PKG_VERSION" | "ii|$PKG_VERSION")
		say "camagent $PKG_VERSION is installed already: not reinstalling"
		return 0
		;;
	ii*) say "camagent ${id_status#*|} is installed: replacing it with $PKG_VERSION" ;;
	esac
	DEBIAN_FRONTEND=noninteractive
	export DEBIAN_FRONTEND
	# Keep an existing /etc/camagent/agent.toml: write_config decides what goes in it.
	# The package lists are refreshed only when the dependencies cannot be had without,
	# so that a machine with them installed needs no mirror.
	set -- apt-get install -y -q --allow-downgrades -o Dpkg::Use-Pty=0 \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$PKG_FILE"
	if ! run_try "$@"; then
		say "apt-get install failed: refreshing the package lists and trying again"
		run apt-get update -q
		run "$@"
	fi
	RESTART=1
}

install_venv() {
	if [ -f "$ROOT$VENV_MARKER" ] && [ "$(cat "$ROOT$VENV_MARKER")" = "$PKG_SHA256 $PKG_NAME" ]; then
		say "camagent $PKG_VERSION is installed in $VENV_DIR already: not reinstalling"
	else
		if [ ! -x "$ROOT$VENV_DIR/bin/python" ]; then
			# The distribution's aiohttp, cryptography and zeroconf, when they meet the
			# requirements, as the .deb uses them: its security updates reach the agent, and
			# its cryptography is built on the system's OpenSSL (6 MiB less resident than
			# PyPI's wheel with its own). pip adds from PyPI only what is missing or too old.
			run "$PY" -m venv --system-site-packages "$ROOT$VENV_DIR"
		fi
		run "$ROOT$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check --no-input \
			--upgrade "$PKG_FILE"
		if [ "$DRY_RUN" = 1 ]; then
			say "would write $VENV_MARKER"
		else
			printf '%s %s\n' "$PKG_SHA256" "$PKG_NAME" >"$ROOT$VENV_MARKER"
		fi
		RESTART=1
	fi
	if [ ! -L "$ROOT$LINK_FILE" ]; then
		run mkdir -p "$ROOT${LINK_FILE%/*}"
		run ln -sf "$VENV_DIR/bin/camagent" "$ROOT$LINK_FILE"
	fi
	if ! getent passwd camagent >/dev/null 2>&1; then
		iv_nologin=/usr/sbin/nologin
		[ -x "$iv_nologin" ] || iv_nologin=/sbin/nologin
		run useradd --system --user-group --no-create-home --home-dir "$STATE_DIR" \
			--shell "$iv_nologin" camagent
	fi
	unit_text >"$TMP_DIR/camagent.service"
	put_file "$TMP_DIR/camagent.service" "$UNIT_FILE" 0644
	if [ "$FILE_CHANGED" = 1 ]; then
		run systemctl daemon-reload
		RESTART=1
	fi
}

# The unit of the Debian package (packaging/camagent.service), started from the venv and
# without its Documentation= (the README is not installed): the serving cloud puts it in
# place of the marker line (cloud_mock/installer.py for the mock).
unit_text() {
	cat <<'CAMAGENT_UNIT'
@CAMAGENT_UNIT@
CAMAGENT_UNIT
}

config_text() {
	if [ "$NVR" = 1 ]; then ct_kind=nvr; else ct_kind=camera; fi
	if [ -n "$CA_BUNDLE" ]; then ct_ca=$CA_FILE; else ct_ca=; fi
	cat <<EOF
# Written by install.sh from $CLOUD_URL.  Every key: the README (Configuration).
# Running install.sh again rewrites this file (keeping the old one as agent.toml.bak-*).

[device]
kind = "$ct_kind"

[cloud]
url = "$CLOUD_URL"
ca_file = "$ct_ca"
trust_keys = ["$KEYS_FILE"]
EOF
}

write_config() {
	if [ -n "$CA_BUNDLE" ]; then
		put_file "$CA_BUNDLE" "$CA_FILE" 0644
		[ "$FILE_CHANGED" = 0 ] || RESTART=1
	fi
	put_file "$TMP_DIR/cloud-keys.pem" "$KEYS_FILE" 0644
	[ "$FILE_CHANGED" = 0 ] || RESTART=1
	config_text >"$TMP_DIR/agent.toml"
	put_file "$TMP_DIR/agent.toml" "$CONFIG_FILE" 0644 backup
	if [ "$FILE_CHANGED" = 1 ]; then
		RESTART=1
		if [ "$DRY_RUN" = 1 ]; then
			say "with this content:"
			sed 's/^/    /' "$TMP_DIR/agent.toml"
		fi
	fi
}

# --- the service and the result ------------------------------------------------------------

start_service() {
	ss_enabled=0
	ss_active=0
	if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then ss_enabled=1; fi
	if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then ss_active=1; fi
	if [ "$ss_active" = 0 ]; then
		if [ "$ss_enabled" = 0 ]; then
			run systemctl enable --now "$SERVICE"
		else
			run systemctl start "$SERVICE"
		fi
		return 0
	fi
	[ "$ss_enabled" = 1 ] || run systemctl enable "$SERVICE"
	if [ "$RESTART" = 1 ]; then
		say "the package or the configuration changed: restarting the service"
		run systemctl restart "$SERVICE"
	else
		say "the $SERVICE service is running with this configuration: not restarting it"
	fi
}

wait_active() {
	[ "$DRY_RUN" = 0 ] || return 0
	wa_waited=0
	while ! systemctl is-active --quiet "$SERVICE"; do
		if [ "$wa_waited" -ge "$WAIT" ]; then
			die "the $SERVICE service is not active after $WAIT s: see journalctl -u $SERVICE -n 50"
		fi
		sleep 1
		wa_waited=$((wa_waited + 1))
	done
	say "the $SERVICE service is active"
}

# give_token WORD...: `camagent WORD... --token-file -` with the token on its standard
# input (printf is built in: the token is in no process's command line, which every local
# user can read in /proc/PID/cmdline).  A camagent that takes it only as an argument (a
# release older than this script) does not get it at all.
give_token() {
	if ! "$CAMAGENT" "$@" --help 2>/dev/null | grep -q -e '--token-file'; then
		die "this camagent (older than this script) takes the token only on its command line, where every local user can read it (/proc/PID/cmdline): not passing it that way: install this cloud's package, then run this again"
	fi
	printf '%s\n' "$TOKEN" | run "$CAMAGENT" --config "$ROOT$CONFIG_FILE" "$@" --token-file -
}

apply_token() {
	[ -n "$TOKEN" ] || return 0
	if [ "$DRY_RUN" = 1 ]; then
		if [ "$NVR" = 1 ]; then
			say "would run: camagent nvr register --token-file - with the token on its standard input (unless this NVR is linked already)"
		else
			say "would run: camagent token set --token-file - with the token on its standard input (unless the device uses this token already)"
		fi
		return 0
	fi
	if [ "$NVR" = 1 ]; then
		if [ "$(status_field token.present)" = true ]; then
			say "this NVR is linked to the cloud already: the registration token is not needed"
		else
			give_token nvr register
		fi
		return 0
	fi
	at_current=$(status_field token.jti)
	at_wanted=$(printf '%s' "$TOKEN" | "$PY" -c 'import base64, json, sys
part = sys.stdin.read().split(".")[0]
print(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))).get("jti", ""))' 2>/dev/null || true)
	if [ -n "$at_current" ] && [ "$at_current" = "$at_wanted" ]; then
		say "the device uses this token already"
	else
		give_token token set
	fi
}

show_result() {
	if [ "$DRY_RUN" = 1 ]; then
		if [ -n "$TOKEN" ]; then
			say "would wait until the device is connected, then run: camagent status"
		elif [ "$NVR" = 1 ]; then
			say "would wait for the activation code, then run: camagent nvr code"
		else
			say "would run: camagent status"
		fi
		return 0
	fi
	if [ -n "$TOKEN" ]; then
		sr_waited=0
		until [ "$(status_field state)" = connected ]; do
			if [ "$sr_waited" -ge "$WAIT" ]; then
				cli status || true
				die "the device is not connected after $WAIT s: see journalctl -u $SERVICE -n 50"
			fi
			sleep 1
			sr_waited=$((sr_waited + 1))
		done
		cli status
		say "connected to $CLOUD_URL"
	elif [ "$NVR" = 1 ]; then
		if [ "$(status_field token.present)" = true ]; then
			cli status
			say "this NVR is linked to the cloud already (camagent reset unlinks it)"
			return 0
		fi
		sr_waited=0
		until cli nvr code --json >/dev/null 2>&1; do
			if [ "$sr_waited" -ge "$WAIT" ]; then
				die "no activation code after $WAIT s: see journalctl -u $SERVICE -n 50"
			fi
			sleep 1
			sr_waited=$((sr_waited + 1))
		done
		cli nvr code
		say "enter the code in the cloud (Registrators, Add registrator, Connect) or open the URL"
	else
		cli status
		if [ ! -f "$ROOT/etc/camagent/password" ]; then
			say "next: write the device password into /etc/camagent/password, then add the device in the cloud with its ID and that password"
		fi
	fi
}

# --- uninstalling ----------------------------------------------------------------------------

uninstall() {
	un_found=0
	if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
		run systemctl stop "$SERVICE"
		un_found=1
	fi
	if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then
		run systemctl disable "$SERVICE"
		un_found=1
	fi
	if have dpkg-query; then
		un_status=$(dpkg-query -W -f='${db:Status-Abbrev}' camagent 2>/dev/null || true)
		DEBIAN_FRONTEND=noninteractive
		export DEBIAN_FRONTEND
		case $un_status in
		ii* | iU* | iF* | iH* | hi*)
			un_found=1
			if [ "$PURGE" = 1 ]; then
				run apt-get purge -y -q -o Dpkg::Use-Pty=0 camagent
			else
				run apt-get remove -y -q -o Dpkg::Use-Pty=0 camagent
			fi
			;;
		rc*)
			if [ "$PURGE" = 1 ]; then
				un_found=1
				run apt-get purge -y -q -o Dpkg::Use-Pty=0 camagent
			fi
			;;
		esac
	fi
	if [ -d "$ROOT$VENV_DIR" ] || [ -f "$ROOT$UNIT_FILE" ] || [ -L "$ROOT$LINK_FILE" ]; then
		un_found=1
		[ ! -d "$ROOT$VENV_DIR" ] || run rm -rf "$ROOT$VENV_DIR"
		[ ! -L "$ROOT$LINK_FILE" ] || run rm -f "$ROOT$LINK_FILE"
		if [ -f "$ROOT$UNIT_FILE" ]; then
			run rm -f "$ROOT$UNIT_FILE"
			run systemctl daemon-reload
		fi
	fi
	if [ "$PURGE" = 1 ]; then
		for un_dir in "$ETC_DIR" "$STATE_DIR"; do
			if [ -d "$ROOT$un_dir" ]; then
				un_found=1
				run rm -rf "$ROOT$un_dir"
			fi
		done
	fi
	if [ "$un_found" = 0 ]; then
		say "camagent is not installed: nothing to do"
	elif [ "$DRY_RUN" = 1 ]; then
		say "dry run: nothing was changed"
	elif [ "$PURGE" = 1 ]; then
		say "camagent removed, with its configuration and state"
	else
		say "camagent removed; $ETC_DIR and $STATE_DIR are kept (--uninstall --purge removes them)"
	fi
}

# --- main ------------------------------------------------------------------------------------

main() {
	set -eu
	umask 022
	constants
	ROOT=${CAMAGENT_INSTALL_ROOT:-}
	ROOT=${ROOT%/}
	case $ROOT in
	'' | /*) ;;
	*) die "CAMAGENT_INSTALL_ROOT must be an absolute path" ;;
	esac
	WAIT=${CAMAGENT_INSTALL_WAIT:-30}
	case $WAIT in
	'' | *[!0-9]*) die "CAMAGENT_INSTALL_WAIT must be a number of seconds" ;;
	esac
	CHANGES=0
	RESTART=0
	TMP_DIR=
	parse_args "$@"
	ARGS_QUOTED=$(shell_quote "$@")
	[ -z "$ROOT" ] || say "installing under $ROOT (CAMAGENT_INSTALL_ROOT)"
	[ "$DRY_RUN" = 0 ] || say "dry run: printing what would be done, changing nothing"

	if [ "$UNINSTALL" = 1 ]; then
		check_root
		uninstall
		return 0
	fi

	served_values
	check_served
	check_root
	check_arch
	have curl || die "curl is missing"
	choose_method

	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	make_tmp
	download_package
	download_keys

	if [ "$METHOD" = deb ]; then install_deb; else install_venv; fi
	write_config
	start_service
	wait_active
	apply_token
	show_result

	if [ "$DRY_RUN" = 1 ]; then
		say "dry run: nothing was changed"
	elif [ "$CHANGES" = 0 ]; then
		say "done: everything was in place already, nothing changed"
	else
		say "done"
	fi
}

main "$@"
