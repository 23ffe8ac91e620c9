"""Accounts and sessions: organizations, users, login sessions, account settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cloud_mock.store.db import Aggregate, from_row, insert, to_columns


@dataclass(frozen=True)
class User:
    login: str
    org: str
    role: str
    password_hash: str
    max_sessions: int | None


@dataclass(frozen=True)
class Session:
    id: str
    login: str
    device: str
    software: str
    started: float
    last_activity: float


class AccountsStore(Aggregate):
    # --- orgs and users ------------------------------------------------------------------

    def upsert_org(self, name: str, business: bool) -> None:
        self._db.execute(
            "INSERT INTO orgs(name, business) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET business = excluded.business",
            (name, int(business)),
        )

    def ensure_org(self, name: str, business: bool) -> None:
        """Create the org if it does not exist; an existing one is left as it is."""
        self._db.execute(
            "INSERT OR IGNORE INTO orgs(name, business) VALUES (?, ?)", (name, int(business))
        )

    def org_is_business(self, name: str) -> bool | None:
        row = self._db.execute("SELECT business FROM orgs WHERE name = ?", (name,)).fetchone()
        return None if row is None else bool(row["business"])

    def upsert_user(self, user: User) -> None:
        insert(self._db, "users", to_columns(user), upsert_on="login")

    def get_user(self, login: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE login = ?", (login,)).fetchone()
        return None if row is None else from_row(User, row)

    # --- sessions ------------------------------------------------------------------------

    def add_session(self, session: Session, secret_hash: str) -> None:
        insert(self._db, "sessions", {**to_columns(session), "secret_hash": secret_hash})

    def session_by_secret(self, secret_hash: str) -> Session | None:
        row = self._db.execute(
            "SELECT * FROM sessions WHERE secret_hash = ?", (secret_hash,)
        ).fetchone()
        return None if row is None else from_row(Session, row)

    def touch_session(self, session_id: str, at: float) -> None:
        self._db.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", (at, session_id))

    def sessions_of(self, login: str) -> list[Session]:
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE login = ? ORDER BY started DESC, rowid DESC", (login,)
        ).fetchall()
        return [from_row(Session, row) for row in rows]

    def delete_session(self, session_id: str, login: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM sessions WHERE id = ? AND login = ?", (session_id, login)
        )
        return cursor.rowcount > 0

    def get_session(self, session_id: str) -> Session | None:
        row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else from_row(Session, row)

    def delete_idle_sessions(self, active_since: float) -> int:
        """End every session whose last activity is before `active_since`; how many."""
        cursor = self._db.execute("DELETE FROM sessions WHERE last_activity < ?", (active_since,))
        return cursor.rowcount

    # --- settings ------------------------------------------------------------------------

    def set_settings(self, settings: dict[str, Any]) -> None:
        with self.transaction() as db:
            for key, value in settings.items():
                db.execute(
                    "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                    (key, json.dumps(value)),
                )

    def delete_settings(self, keys: list[str]) -> None:
        self._db.executemany("DELETE FROM settings WHERE key = ?", [(key,) for key in keys])

    def settings(self) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM settings").fetchall()
        return {row["key"]: json.loads(row["value"]) for row in rows}
