"""The choices of the login conversation, with a scripted person (a Console that answers
from a list); the conversation with the real cloud is in tests/e2e/test_cloud_cli_e2e.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.account import login
from agent.account.console import printable, sessions_table
from agent.account.errors import CloudError

SESSIONS = [
    {"id": "old", "device": "laptop", "software": "web", "started": 100.0, "last_activity": 1.0},
    {"id": "new", "device": "phone", "software": "app", "started": 200.0, "last_activity": 2.0},
]


@dataclass
class Person:
    answers: list[str]
    shown: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.shown.append(text)

    def ask(self, prompt: str) -> str:
        self.shown.append(prompt)
        if not self.answers:
            raise CloudError("standard input ended")
        return self.answers.pop(0)

    def ask_secret(self, prompt: str) -> str:
        return self.ask(prompt)


def test_choice_is_newest_first_warns_and_confirms() -> None:
    person = Person(["7", "x", "1", "n", "2", "y"])
    ordered = sorted(SESSIONS, key=login._started, reverse=True)
    chosen = login._choose(person, ordered)
    assert chosen["id"] == "old"  # number 2 of newest-first
    assert "Type a number from 1 to 2, or q." in person.shown
    assert person.shown.count("Warning: unsaved work in that session may be lost.") == 2


def test_q_cancels_without_ending_anything() -> None:
    with pytest.raises(login.LoginCancelled, match="no session was ended"):
        login._choose(Person(["q"]), SESSIONS)


def test_the_table_has_the_columns_and_marks_the_current_session() -> None:
    rows = [{**SESSIONS[1], "current": True}, SESSIONS[0]]
    text = sessions_table(rows).splitlines()
    assert text[0].split() == ["device", "software", "started", "last", "activity", "id"]
    assert text[1].startswith("*")
    assert "phone" in text[1]
    assert text[1].endswith("new")
    numbered = sessions_table(rows, numbered=True).splitlines()
    assert numbered[1].startswith("1")
    assert numbered[2].startswith("2")


def test_server_text_cannot_drive_the_terminal() -> None:
    assert printable("evil\x1b]0;title\x07name") == "evil?]0;title?name"
    assert len(printable("x" * 100)) == 40
