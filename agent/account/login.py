"""The login conversation (docs/design.md §4): password, captcha when the cloud asks for one
(shown as a PNG file and in the terminal; `r` for a new one), and at the session limit
a choice of a session to end, then the login again."""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.account import captcha_view
from agent.account.client import CloudClient, Response
from agent.account.console import Console, printable, sessions_table
from agent.account.errors import CloudError

MAX_ROUNDS = 20  # answers to captchas and session choices before giving up


class LoginCancelled(CloudError):
    """The person chose not to end a session; nothing was changed."""


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str
    device: str
    software: str


@dataclass(frozen=True)
class Captcha:
    id: str
    png: bytes

    @classmethod
    def from_json(cls, body: Any) -> Captcha:
        try:
            return cls(str(body["captcha_id"]), base64.b64decode(body["image"], validate=True))
        except (TypeError, KeyError, binascii.Error):
            raise CloudError("the cloud asked for a captcha but sent no usable image") from None


def log_in(
    client: CloudClient, console: Console, creds: Credentials, captcha_file: Path
) -> dict[str, Any]:
    """Log in; the 200 body `{session, session_id, user}`. CloudError says why not."""
    body: dict[str, Any] = {
        "login": creds.login,
        "password": creds.password,
        "device": creds.device,
        "software": creds.software,
    }
    where = f"{client.profile.url} (server profile {client.profile.name!r})"
    for _ in range(MAX_ROUNDS):
        answer = client.request("POST", "/v1/auth/login", body)
        code = answer.body.get("error") if isinstance(answer.body, dict) else None
        if answer.status == 200:
            return _session_body(answer)
        if answer.status == 428 and code == "captcha_required":
            if "captcha_id" not in body:
                console.say("The cloud asks you to solve a captcha.")
            else:
                console.say(printable(answer.message(), 300))
            captcha_id, text = solve_captcha(client, console, answer, captcha_file)
            body.update(captcha_id=captcha_id, captcha_answer=text)
            continue
        if answer.status == 409 and code == "too_many_sessions":
            end_one_session(client, console, creds.login, answer.body)
            body.pop("captcha_id", None)
            body.pop("captcha_answer", None)
            continue
        if answer.status == 401:
            raise CloudError(f"wrong login or password for {creds.login!r} at {where}")
        if answer.status == 429:
            retry = answer.body.get("retry_after") if isinstance(answer.body, dict) else None
            wait = f"try again in {retry} s" if retry is not None else "try again later"
            raise CloudError(f"too many failed logins at {where}: {wait}")
        raise CloudError(f"{where} refused the login: {printable(answer.message(), 300)}")
    raise CloudError(f"gave up logging in to {where} after {MAX_ROUNDS} rounds")


def _session_body(answer: Response) -> dict[str, Any]:
    body = answer.body
    if not isinstance(body, dict) or not isinstance(body.get("session"), str):
        raise CloudError("the cloud accepted the login but sent no session")
    return body


# --- captcha ------------------------------------------------------------------------------------


def solve_captcha(
    client: CloudClient, console: Console, answer: Response, captcha_file: Path
) -> tuple[str, str]:
    """Show the captcha until the person types an answer; `r` fetches a new image."""
    captcha = Captcha.from_json(answer.body)
    while True:
        show_captcha(console, captcha, captcha_file)
        while not (text := console.ask("Characters in the image (r = new image): ").strip()):
            pass
        if text.lower() != "r":
            return captcha.id, text
        # A refresh replaces this captcha only (and keeps it bound to the same login).
        fresh = client.request("GET", f"/v1/auth/captcha?replaces={urllib.parse.quote(captcha.id)}")
        if fresh.status != 200:
            raise CloudError(f"could not get a new captcha: {printable(fresh.message(), 300)}")
        captcha = Captcha.from_json(fresh.body)


def show_captcha(console: Console, captcha: Captcha, captcha_file: Path) -> None:
    fd = os.open(captcha_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(captcha.png)
    console.say(f"Captcha {captcha.id}, image saved in {captcha_file}:")
    try:
        columns = min(captcha_view.MAX_COLUMNS, shutil.get_terminal_size().columns)
        console.say(captcha_view.render(captcha.png, max(columns, 20)))
    except ImportError:
        console.say("(install Pillow to see the captcha here; open the file above)")
    except ValueError as error:
        console.say(f"(the captcha cannot be drawn here: {error}; open the file above)")


# --- session limit ------------------------------------------------------------------------------


def end_one_session(client: CloudClient, console: Console, login: str, body: Any) -> None:
    """At the session limit: show the sessions, let the person pick one, warn, confirm,
    end it with the resolve token. LoginCancelled on `q`."""
    sessions = [s for s in body.get("sessions", []) if isinstance(s, dict) and "id" in s]
    resolve_token = body.get("resolve_token")
    if not sessions or not isinstance(resolve_token, str):
        raise CloudError(f"the cloud refused the login: {printable(body.get('message'), 300)}")
    sessions.sort(key=_started, reverse=True)
    limit = body.get("max_sessions", len(sessions))
    console.say(
        f"{login} already has {len(sessions)} open session(s); the most allowed is {limit}. "
        "Open sessions, newest first:"
    )
    console.say(sessions_table(sessions, numbered=True))
    chosen = _choose(console, sessions)
    answer = client.request(
        "DELETE",
        f"/v1/sessions/{urllib.parse.quote(str(chosen['id']), safe='')}",
        bearer=resolve_token,
    )
    if answer.status == 204:
        console.say("Session ended; logging in again.")
    elif answer.status == 404:
        console.say("That session had ended already; logging in again.")
    elif answer.status == 401:
        console.say(f"{printable(answer.message(), 300)}; logging in again.")
    else:
        raise CloudError(f"could not end the session: {printable(answer.message(), 300)}")


def _choose(console: Console, sessions: list[dict[str, Any]]) -> dict[str, Any]:
    count = len(sessions)
    while True:
        text = console.ask(f"End which session? [1-{count}, q to cancel]: ").strip().lower()
        if text in ("q", "quit"):
            raise LoginCancelled("login cancelled; no session was ended")
        if not text.isdigit() or not 1 <= int(text) <= count:
            console.say(f"Type a number from 1 to {count}, or q.")
            continue
        chosen = sessions[int(text) - 1]
        console.say("Warning: unsaved work in that session may be lost.")
        what = f"{printable(chosen.get('device'))}, {printable(chosen.get('software'))}"
        confirm = console.ask(f"End session {text} ({what})? [y/N]: ").strip().lower()
        if confirm in ("y", "yes"):
            return chosen


def _started(session: dict[str, Any]) -> float:
    value = session.get("started")
    return float(value) if isinstance(value, int | float) else 0.0
