"""`camagent cloud servers|login|sessions|logout`: profiles and sessions (docs/design.md §4)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from agent import hints
from agent.account import profiles, session_file

EXIT_OK = 0


def add_parser(sub: Any) -> None:
    cloud = sub.add_parser("cloud", help="server profiles and sessions in the cloud")
    cloud_sub = cloud.add_subparsers(dest="cloud_command", required=True, metavar="ACTION")

    servers = cloud_sub.add_parser("servers", help="server connection profiles")
    servers_sub = servers.add_subparsers(dest="servers_command", required=True, metavar="ACTION")
    add = servers_sub.add_parser("add", help="add a profile (the first becomes the default)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("url", metavar="URL", help="https URL of the cloud (https:// if omitted)")
    add.add_argument("--login", default="", help="the login to use with it")
    add.add_argument("--ca-file", metavar="PEM", default="", help="extra CA bundle to trust")
    add.add_argument("--default", action="store_true", help="make it the default profile")
    listing = servers_sub.add_parser("list", help="list the profiles")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    default = servers_sub.add_parser("default", help="make NAME the default profile")
    default.add_argument("name", metavar="NAME")
    remove = servers_sub.add_parser("remove", help="remove a profile (not the default)")
    remove.add_argument("name", metavar="NAME")

    login = cloud_sub.add_parser("login", help="log in and keep the session")
    _profile(login)
    login.add_argument("--login", help="login name (default: the profile's)")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password as a line from stdin"
    )

    sessions = cloud_sub.add_parser("sessions", help="your open sessions in the cloud")
    _profile(sessions)
    sessions.add_argument("--json", action="store_true", help="print JSON for scripts")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", metavar="ACTION")
    end = sessions_sub.add_parser("end", help="end session ID (yours)")
    end.add_argument("session_id", metavar="ID")
    _profile(end, default=argparse.SUPPRESS)

    logout = cloud_sub.add_parser("logout", help="end the session and forget it")
    _profile(logout)


def _profile(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    profiles.add_profile_option(parser, "server profile (default: the default one)", **kwargs)


def run(args: argparse.Namespace) -> int:
    if args.cloud_command == "servers":
        return SERVERS[args.servers_command](args)
    return COMMANDS[args.cloud_command](args)


# -- servers --------------------------------------------------------------------------------


def servers_add(args: argparse.Namespace) -> int:
    current = profiles.load()
    profile = profiles.Profile(
        name=profiles.check_name(args.name),
        url=profiles.normalize_url(args.url),
        login=args.login,
        ca_file=profiles.check_ca_file(args.ca_file) if args.ca_file else "",
    )
    changed = current.add(profile, make_default=args.default)
    path = profiles.save(changed)
    role = "the default profile" if changed.default == profile.name else "a profile"
    print(f"Added {profile.name!r} ({profile.url}) as {role}, in {path}.")
    if changed.default != profile.name:
        print(
            f"The default stays {changed.default!r}; change it with "
            f"`{hints.show('cloud servers default', name=profile.name)}`."
        )
    return EXIT_OK


def servers_list(args: argparse.Namespace) -> int:
    current = profiles.load()
    rows = [p.to_json(p.name == current.default) for p in current.servers]
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        print(f"No server profiles: add one with `{hints.show('cloud servers add')}`.")
        return EXIT_OK
    from agent.account.console import printable, table

    logged_in = {p.name for p in current.servers if session_file.load(p.name)}
    print(
        table(
            ["", "name", "url", "login", "session"],
            [
                [
                    "*" if r["default"] else "",
                    printable(r["name"], 64),
                    r["url"],
                    printable(r["login"]),
                    "logged in" if r["name"] in logged_in else "",
                ]
                for r in rows
            ],
        )
    )
    print("(* = default)")
    return EXIT_OK


def servers_default(args: argparse.Namespace) -> int:
    changed = profiles.load().with_default(args.name)
    profiles.save(changed)
    print(f"{args.name!r} is now the default server profile.")
    return EXIT_OK


def servers_remove(args: argparse.Namespace) -> int:
    current = profiles.load()
    changed = current.remove(args.name)
    profile = current.get(args.name)
    _end_stored_session(profile)
    profiles.save(changed)
    print(f"Removed server profile {args.name!r}.")
    return EXIT_OK


def _end_stored_session(profile: profiles.Profile) -> None:
    """Log out a profile's session before its profile goes (best effort: a session that
    cannot be ended now ends by itself when idle)."""
    from agent.account.api import CloudSession
    from agent.account.client import CloudClient
    from agent.account.errors import CloudError

    stored = session_file.load(profile.name)
    if stored is None:
        return
    if stored.url == profile.url:
        try:
            CloudSession(profile, CloudClient(profile, timeout=10), stored).logout()
        except CloudError as error:
            print(f"Note: could not end its session in the cloud ({error}).")
    session_file.forget(profile.name)


SERVERS = {
    "add": servers_add,
    "list": servers_list,
    "default": servers_default,
    "remove": servers_remove,
}


# -- login, sessions, logout ------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    from agent import __version__
    from agent.account.client import CloudClient
    from agent.account.console import StdConsole
    from agent.account.login import Credentials, log_in

    profile = profiles.load().get(args.profile)
    console = StdConsole(password_stdin=args.password_stdin)
    login = args.login or profile.login
    if not login:
        login = console.ask(f"Login at {profile.url}: ").strip()
    password = console.ask_secret(f"Password for {login} at {profile.url}: ")
    if not password:
        from agent.account.errors import CloudError

        raise CloudError("an empty password cannot log in")
    # A new login replaces the session kept for this profile; ending the old one first
    # keeps it from counting against the session limit.
    _end_stored_session(profile)
    creds = Credentials(login, password, socket.gethostname(), f"camagent-cli/{__version__}")
    with _captcha_file() as captcha_file:
        body = log_in(CloudClient(profile), console, creds, captcha_file)
    user: dict[str, Any] = body["user"] if isinstance(body.get("user"), dict) else {}
    stored = session_file.StoredSession(
        session=body["session"],
        session_id=str(body.get("session_id", "")),
        login=str(user.get("login", login)),
        url=profile.url,
    )
    path = session_file.save(profile.name, stored)
    org = f" (organization {user['org']})" if user.get("org") else ""
    print(f"Logged in to {profile.url} as {stored.login}{org}; session kept in {path}.")
    return EXIT_OK


@contextlib.contextmanager
def _captcha_file() -> Any:
    fd, name = tempfile.mkstemp(prefix="camagent-captcha-", suffix=".png")
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def cmd_sessions(args: argparse.Namespace) -> int:
    from agent.account.api import open_session
    from agent.account.console import sessions_table

    cloud = open_session(args.profile)
    if args.sessions_command == "end":
        cloud.end_session(args.session_id)
        if args.session_id == cloud.stored.session_id:
            session_file.forget(cloud.profile.name)
            print(f"Ended session {args.session_id} (this one): logged out.")
        else:
            print(f"Ended session {args.session_id}.")
        return EXIT_OK
    sessions = cloud.sessions()
    if args.json:
        print(json.dumps(sessions))
        return EXIT_OK
    print(f"Sessions of {cloud.stored.login} at {cloud.profile.url}, newest first:")
    print(sessions_table(sessions))
    print(f"(* = this one; end another with `{hints.show('cloud sessions end')}`)")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    from agent.account.api import CloudSession, stored_session
    from agent.account.client import CloudClient
    from agent.account.errors import NotLoggedInError

    profile = profiles.load().get(args.profile)
    try:
        stored = stored_session(profile)
    except NotLoggedInError:
        if session_file.forget(profile.name):  # a token for another URL: just drop it
            print(f"Forgot the saved session of {profile.name!r}.")
        else:
            print(f"Not logged in to {profile.url} (server profile {profile.name!r}).")
        return EXIT_OK
    CloudSession(profile, CloudClient(profile), stored).logout()
    print(f"Logged out of {profile.url} (server profile {profile.name!r}).")
    return EXIT_OK


COMMANDS = {"login": cmd_login, "sessions": cmd_sessions, "logout": cmd_logout}
