"""Recording stand-ins for the commands install.sh drives, and a way to run the script.

These are test doubles for a real install (which tests/system does in a booted
container): `apt-get`, `dpkg`, `dpkg-query`, `systemctl`, `camagent`, `useradd`,
`getent`, `id`, `uname` (and, for truncated scripts, `curl`).  Each call appends one line
`name<TAB>arg<TAB>arg…` to the log; the package and the service keep a little state in
files so that a second run sees what the first one did (like the real ones would).

Environment of the stand-ins:
    STANDIN_LOG    the log file
    STANDIN_STATE  the state directory
    STANDIN_UID    what `id -u` prints (default 0)
    STANDIN_ARCH   what `uname -m` prints (default x86_64)
    STANDIN_NEVER_ACTIVE=1  the service never becomes active
    STANDIN_APT_NEEDS_UPDATE=1  `apt-get install` fails until `apt-get update` ran
    STANDIN_ARGV_ONLY=1  `camagent` takes a token only as an argument (as releases
                   before `--token-file` did); otherwise with `--token-file -` on stdin
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.install import REPO_ROOT

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMES: tuple[str, ...] = (
    "apt-get",
    "dpkg",
    "dpkg-query",
    "systemctl",
    "camagent",
    "useradd",
    "getent",
    "id",
)
NAMES += ("uname",)

# Calls that only look: a --dry-run may make these, and nothing else.
READ_ONLY = {
    ("dpkg-query",),
    ("systemctl", "is-active"),
    ("systemctl", "is-enabled"),
    ("id",),
    ("uname",),
    ("getent",),
}

STANDIN = r"""
import base64, json, os, sys
from pathlib import Path

name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
state = Path(os.environ["STANDIN_STATE"])
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write("\t".join([name, *args]) + "\n")


def flag(key):
    return (state / key).exists()


def put(key, value="1"):
    (state / key).write_text(value)


def drop(*keys):
    for key in keys:
        (state / key).unlink(missing_ok=True)


def real(path):
    os.execv(path, [path, *args])


if name == "id":
    if args == ["-u"]:
        print(os.environ.get("STANDIN_UID", "0"))
        sys.exit(0)
    real("/usr/bin/id")
if name == "uname":
    if args == ["-m"]:
        print(os.environ.get("STANDIN_ARCH", "x86_64"))
        sys.exit(0)
    real("/bin/uname")
if name == "getent":
    if args == ["passwd", "camagent"]:
        sys.exit(0 if flag("user") else 2)
    real("/usr/bin/getent")
if name == "useradd":
    put("user")
    sys.exit(0)
if name == "curl":  # only in the truncation tests: must never be reached
    sys.exit(7)
if name == "dpkg-query":
    if not flag("installed"):
        print("dpkg-query: no packages found matching camagent", file=sys.stderr)
        sys.exit(1)
    fmt = next(a[3:] for a in args if a.startswith("-f="))
    out = fmt.replace("${db:Status-Abbrev}", "ii ")
    sys.stdout.write(out.replace("${Version}", (state / "installed").read_text()))
    sys.exit(0)
if name == "apt-get":
    if args[0] == "update":
        put("updated")
    if args[0] == "install":
        if os.environ.get("STANDIN_APT_NEEDS_UPDATE") and not flag("updated"):
            print("E: Unable to locate package python3-aiohttp", file=sys.stderr)
            sys.exit(100)
        deb = Path(args[-1])
        assert deb.is_file(), f"apt-get install: {deb} is not there"
        put("installed", deb.name.split("_")[1])
        put("enabled")  # the package's postinst enables and starts the service
        put("active")
    elif args[0] in ("remove", "purge"):
        drop("installed", "enabled", "active")
    sys.exit(0)
if name == "dpkg":
    sys.exit(0)
if name == "systemctl":
    verb = args[0]
    if verb == "is-active":
        sys.exit(0 if flag("active") and not os.environ.get("STANDIN_NEVER_ACTIVE") else 3)
    if verb == "is-enabled":
        sys.exit(0 if flag("enabled") else 1)
    if verb == "enable":
        put("enabled")
        if "--now" in args:
            put("active")
    elif verb in ("start", "restart"):
        put("active")
    elif verb == "stop":
        drop("active")
    elif verb == "disable":
        drop("enabled")
    sys.exit(0)
if name == "camagent":
    args = args[2:] if args[:1] == ["--config"] else args
    if args[-1:] == ["--help"]:
        if not os.environ.get("STANDIN_ARGV_ONLY"):
            print("  --token-file FILE  read the token from FILE ('-': stdin)")
        sys.exit(0)
    if args[2:4] == ["--token-file", "-"] and not os.environ.get("STANDIN_ARGV_ONLY"):
        args = [*args[:2], sys.stdin.read().strip()]
    token = json.loads((state / "token").read_text()) if flag("token") else None
    if args[:1] == ["status"]:
        status = {
            "state": "connected" if token else "provisioning",
            "kind": "nvr" if flag("nvr") else "camera",
            "token": {"present": bool(token), **(token or {})},
        }
        print(json.dumps(status) if "--json" in args else f"state  {status['state']}")
        sys.exit(0)
    if args[:2] == ["token", "set"]:
        part = args[2].split(".")[0]
        payload = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        put("token", json.dumps({"jti": payload["jti"]}))
        sys.exit(0)
    if args[:2] == ["nvr", "register"]:
        put("token", json.dumps({"jti": "from-" + args[2]}))
        sys.exit(0)
    if args[:2] == ["nvr", "code"]:
        if token:
            print("camagent: this NVR is linked to the cloud already", file=sys.stderr)
            sys.exit(1)
        code = {"code": "ABCD-EFGH-JKLM", "activation_url": "https://cloud/activate#ABCD"}
        print(json.dumps(code) if "--json" in args else "Activation code:  ABCD-EFGH-JKLM")
        sys.exit(0)
    sys.exit(0)
print(f"stand-in {name}: unexpected call {args}", file=sys.stderr)
sys.exit(99)
"""


def write_standins(directory: Path, names: tuple[str, ...] = NAMES) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text(f"#!{sys.executable}\n{STANDIN}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Sandbox:
    """A fake target root, a PATH with stand-ins first, and their log and state."""

    base: Path
    env_extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.base / "root"
        self.bin = self.base / "bin"
        self.state = self.base / "state"
        self.log = self.base / "calls.log"
        for directory in (self.root, self.state):
            directory.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        write_standins(self.bin)
        self.os_release("debian")

    def os_release(self, os_id: str, like: str = "") -> None:
        (self.root / "etc").mkdir(exist_ok=True)
        text = f'PRETTY_NAME="Test {os_id}"\nID={os_id}\n' + (f"ID_LIKE={like}\n" if like else "")
        (self.root / "etc" / "os-release").write_text(text)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:{SYSTEM_PATH}",
            "HOME": str(self.base),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.base),
            "CAMAGENT_INSTALL_ROOT": str(self.root),
            "CAMAGENT_INSTALL_WAIT": "3",
            "STANDIN_LOG": str(self.log),
            "STANDIN_STATE": str(self.state),
        }
        env.update(self.env_extra)
        env.update(extra)
        return env

    def run(
        self, script: str, *args: str, shell: str = "dash", timeout: float = 120, **env: str
    ) -> Result:
        """`… | sh -s -- ARGS`: the script on stdin, as the one-liner runs it."""
        assert env.get("CAMAGENT_INSTALL_ROOT", str(self.root)), "never install into /"
        done = subprocess.run(
            [shutil.which(shell) or shell, "-s", "--", *args],
            input=script,
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=self.base,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def token_jti(self) -> str | None:
        """The jti of the token the camagent stand-in was given (`from-TOKEN` for a
        registration token), however it got it; None before any."""
        path = self.state / "token"
        return json.loads(path.read_text())["jti"] if path.exists() else None

    def calls(self) -> list[list[str]]:
        return [line.split("\t") for line in self.log.read_text().splitlines()]

    def clear_calls(self) -> None:
        self.log.write_text("")

    def changing_calls(self) -> list[list[str]]:
        return [
            call
            for call in self.calls()
            if (call[0],) not in READ_ONLY and tuple(call[:2]) not in READ_ONLY
        ]

    def files(self) -> list[str]:
        """Everything under the fake root but the os-release the test wrote."""
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.relative_to(self.root) != Path("etc/os-release") and p != self.root / "etc"
        )


def repo_script() -> str:
    return (REPO_ROOT / "install.sh").read_text()
