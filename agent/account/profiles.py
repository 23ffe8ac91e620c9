"""Server connection profiles (docs/design.md §4): name, https URL, login, optional CA file.

`$XDG_CONFIG_HOME/camagent/servers.toml` (default ~/.config), mode 0600:

    default = "prod"

    [[servers]]
    name = "prod"
    url = "https://vms.example.com"
    login = "installer"
    ca_file = "/etc/ssl/vms-ca.pem"

Rules: the first profile becomes the default; with several the user picks one; the
default cannot be removed while other profiles remain (there must always be one to act
with). The rules are pure functions on `Profiles`; loading and saving are the I/O edge.
"""

from __future__ import annotations

import argparse
import os
import tomllib
import unicodedata
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent import hints
from agent.account import toml_writer
from agent.account.errors import NoProfileError, ProfileError
from agent.atomic_file import write_atomic

FILE_NAME = "servers.toml"
MAX_NAME = 64
_FIELDS = ("name", "url", "login", "ca_file")


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    login: str = ""
    ca_file: str = ""

    def to_json(self, default: bool) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "login": self.login, "default": default}


@dataclass(frozen=True)
class Profiles:
    servers: tuple[Profile, ...] = ()
    default: str = ""

    def names(self) -> list[str]:
        return [p.name for p in self.servers]

    def find(self, name: str) -> Profile | None:
        return next((p for p in self.servers if p.name == name), None)

    def get(self, name: str | None) -> Profile:
        """The named profile, or the default one when `name` is None."""
        if not self.servers:
            raise NoProfileError(
                f"no cloud server profile yet: add one with `{hints.show('cloud servers add')}`"
            )
        wanted = self.default if name is None else name
        profile = self.find(wanted)
        if profile is None:
            raise ProfileError(f"no server profile named {name!r}; there are: {self._listing()}")
        return profile

    def add(self, profile: Profile, make_default: bool = False) -> Profiles:
        if self.find(profile.name) is not None:
            raise ProfileError(
                f"a server profile named {profile.name!r} exists already: remove it first "
                f"(`{hints.show('cloud servers remove')}`) or choose another name"
            )
        default = profile.name if make_default or not self.servers else self.default
        return Profiles((*self.servers, profile), default)

    def with_default(self, name: str) -> Profiles:
        return replace(self, default=self.get(name).name)

    def remove(self, name: str) -> Profiles:
        profile = self.get(name)
        if profile.name == self.default and len(self.servers) > 1:
            others = ", ".join(repr(n) for n in self.names() if n != name)
            raise ProfileError(
                f"{name!r} is the default server profile and cannot be removed: make another "
                f"one the default first (`{hints.show('cloud servers default', name='NAME')}`; "
                "there are: "
                f"{others})"
            )
        rest = tuple(p for p in self.servers if p.name != name)
        return Profiles(rest, self.default if rest else "")

    def _listing(self) -> str:
        return ", ".join(repr(n) for n in self.names())


# --- checks of what a user types ---------------------------------------------------------


def check_name(name: str) -> str:
    if not name or not name.strip():
        raise ProfileError("a server profile name cannot be empty")
    if len(name) > MAX_NAME:
        raise ProfileError(f"a server profile name has at most {MAX_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ProfileError(f"a server profile name cannot hold control characters: {name!r}")
    return name


def normalize_url(text: str) -> str:
    """`https://` added when no scheme is given; any other scheme refused (the session
    token and passwords travel over it, and the certificate must be verified)."""
    text = text.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise ProfileError(f"not a usable server URL {text!r}: {error}") from None
    scheme = parts.scheme.lower()
    if scheme != "https":
        raise ProfileError(
            f"only https:// server URLs are supported, not {scheme}:// ({text!r}): the password "
            "and session travel over it and the server's certificate must be verified"
        )
    if not parts.hostname:
        raise ProfileError(f"the server URL {text!r} has no host name")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ProfileError(
            f"the server URL {text!r} should be just https://HOST[:PORT][/PATH], "
            "without user, query or fragment"
        )
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit(("https", netloc, parts.path.rstrip("/"), "", ""))


def check_ca_file(path: str) -> str:
    """An absolute path to a readable PEM bundle that ssl accepts."""
    import ssl

    resolved = Path(path).expanduser().resolve()
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(resolved))
    except (OSError, ssl.SSLError) as error:
        raise ProfileError(
            f"cannot use {resolved} as a CA file: {getattr(error, 'strerror', None) or error}; "
            "give a PEM file with the certificate(s) of the authority that signed the server's"
        ) from None
    return str(resolved)


# --- the file -------------------------------------------------------------------------------


def config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "camagent"


def profiles_path() -> Path:
    return config_dir() / FILE_NAME


def load(path: Path | None = None) -> Profiles:
    path = profiles_path() if path is None else path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Profiles()
    except OSError as error:
        raise ProfileError(f"cannot read {path}: {error.strerror}") from None
    try:
        return parse(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as error:
        raise ProfileError(
            f"{path} is not a valid server profiles file ({error}): fix it by hand, or move "
            "it away and add the profiles again"
        ) from None


def parse(text: str) -> Profiles:
    """Profiles from the file's text; ValueError says what is wrong and where."""
    data = tomllib.loads(text)
    unknown = set(data) - {"default", "servers"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    default = data.get("default", "")
    entries = data.get("servers", [])
    if not isinstance(default, str):
        raise ValueError("'default' must be a string")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'servers' must be an array of tables ([[servers]])")
    servers = tuple(_profile(entry, n) for n, entry in enumerate(entries, 1))
    names = [p.name for p in servers]
    if len(set(names)) != len(names):
        raise ValueError("two [[servers]] entries have the same name")
    if servers and default not in names:
        raise ValueError(f"'default' is {default!r}, which is not one of the servers' names")
    return Profiles(servers, default if servers else "")


def _profile(entry: dict[str, Any], number: int) -> Profile:
    where = f"[[servers]] entry {number}"
    unknown = set(entry) - set(_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in _FIELDS:
        if not isinstance(entry.get(key, ""), str):
            raise ValueError(f"{where}: {key!r} must be a string")
    if not entry.get("name") or not entry.get("url"):
        raise ValueError(f"{where}: 'name' and 'url' are required")
    try:
        check_name(entry["name"])
        url = normalize_url(entry["url"])
    except ProfileError as error:
        raise ValueError(f"{where}: {error}") from None
    return Profile(entry["name"], url, entry.get("login", ""), entry.get("ca_file", ""))


def render(profiles: Profiles) -> str:
    servers = []
    for p in profiles.servers:
        entry = {"name": p.name, "url": p.url}
        entry.update({k: v for k, v in (("login", p.login), ("ca_file", p.ca_file)) if v})
        servers.append(entry)
    top = {"default": profiles.default} if profiles.servers else {}
    return toml_writer.document(top, {"servers": servers})


def save(profiles: Profiles, path: Path | None = None) -> Path:
    path = profiles_path() if path is None else path
    make_private_dir(path.parent)
    write_atomic(path, render(profiles).encode("utf-8"), mode=0o600)
    return path


def make_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise ProfileError(f"cannot create {directory}: {error.strerror}") from None


def add_profile_option(parser: argparse._ActionsContainer, help_text: str, **kwargs: Any) -> None:
    """`--profile NAME` wherever a command picks a cloud server profile (cloud login,
    sessions, logout, finder push, nvr register); `--server` is kept as its old name."""
    parser.add_argument(
        "--profile", "--server", dest="profile", metavar="NAME", help=help_text, **kwargs
    )
