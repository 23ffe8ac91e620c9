"""Login captchas (docs/design.md §4): issued, checked once, dead after 60 s of the mock clock.

`CaptchaBook` is the pure bookkeeping (no I/O, time passed in); `render_png` draws the
image with the `captcha` library, imported only when a captcha is actually made.

A captcha belongs to the login attempt it was drawn for: one drawn in a login's 428
(or asked for with `?login=`) solves only that login. A refresh (`?replaces=ID`) kills
that one captcha, never another client's: people behind one address (an office) do not
kill each other's captchas (issue 17). Each client address holds at most
`MAX_PER_CLIENT` live captchas and drawing them is rate-limited (login_guard.RenderBudget),
which bounds the memory and the CPU a client can make the mock spend.
An id is single use: checking it consumes it, whether the answer was right or not.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

CAPTCHA_TTL_S = 60.0
ANSWER_LENGTH = 5
# No 0/O/Q, 1/I, 2/Z, 5/S, 8/B, G/6: nothing a person could read two ways.
ALPHABET = "ACDEFHJKLMNPRTUVWXY34679"
IMAGE_SIZE = (200, 70)
MAX_LIVE = 10_000  # across all clients; the oldest go first beyond it
MAX_PER_CLIENT = 8  # live captchas of one client address; its oldest go first beyond it


class CaptchaCheck(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # never issued, already used, replaced, or for another login


CHECK_MESSAGES = {
    CaptchaCheck.WRONG: "wrong captcha answer; solve the new captcha",
    CaptchaCheck.EXPIRED: (
        f"the captcha expired (it is valid for {CAPTCHA_TTL_S:g} s); solve the new captcha"
    ),
    CaptchaCheck.UNKNOWN: (
        "unknown captcha: it was already used, replaced by a newer one, or drawn for another "
        "login; solve the new captcha"
    ),
}


@dataclass(frozen=True)
class Captcha:
    id: str
    answer: str
    client: str
    expires_at: float
    login: str | None = None  # the login it may solve; None: any


def normalize_answer(answer: str) -> str:
    """Answers are case-insensitive and may come with stray spaces."""
    return "".join(answer.split()).upper()


def new_answer(length: int = ANSWER_LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class CaptchaBook:
    """Live captchas by id, at most MAX_PER_CLIENT per client address."""

    def __init__(self, max_live: int = MAX_LIVE, max_per_client: int = MAX_PER_CLIENT) -> None:
        self._by_id: OrderedDict[str, Captcha] = OrderedDict()
        self._by_client: dict[str, OrderedDict[str, None]] = {}
        self._max_live = max_live
        self._max_per_client = max_per_client

    def __len__(self) -> int:
        return len(self._by_id)

    def issue(
        self, client: str, now: float, login: str | None = None, replaces: str = ""
    ) -> Captcha:
        """A new captcha for `client` (for `login` only, when given). `replaces`, a
        captcha id, dies: a refresh. A replaced captcha's login carries over."""
        old = self._take(replaces) if replaces else None
        if old is not None and login is None:
            login = old.login
        mine = self._by_client.setdefault(client, OrderedDict())
        while len(mine) >= self._max_per_client:
            self._take(next(iter(mine)))
            mine = self._by_client.setdefault(client, OrderedDict())
        while len(self._by_id) >= self._max_live:
            self._take(next(iter(self._by_id)))
            mine = self._by_client.setdefault(client, OrderedDict())
        captcha = Captcha(
            secrets.token_urlsafe(16), new_answer(), client, now + CAPTCHA_TTL_S, login
        )
        self._by_id[captcha.id] = captcha
        mine[captcha.id] = None
        return captcha

    def check(self, captcha_id: str, answer: str, now: float, login: str) -> CaptchaCheck:
        """Consume `captcha_id` and say whether `answer` solves it in time, for `login`."""
        captcha = self._take(captcha_id)
        if captcha is None or (captcha.login is not None and captcha.login != login):
            return CaptchaCheck.UNKNOWN
        if now >= captcha.expires_at:
            return CaptchaCheck.EXPIRED
        if not secrets.compare_digest(normalize_answer(answer).encode(), captcha.answer.encode()):
            return CaptchaCheck.WRONG
        return CaptchaCheck.OK

    def _take(self, captcha_id: str) -> Captcha | None:
        captcha = self._by_id.pop(captcha_id, None)
        if captcha is not None:
            mine = self._by_client.get(captcha.client)
            if mine is not None:
                mine.pop(captcha_id, None)
                if not mine:
                    del self._by_client[captcha.client]
        return captcha

    def peek(self, captcha_id: str) -> Captcha | None:
        """The live captcha with this id, without consuming it (test hooks only)."""
        return self._by_id.get(captcha_id)


def render_png(answer: str) -> bytes:
    """The captcha picture (PNG). CPU work of a few ms: call it through a thread."""
    from captcha.image import ImageCaptcha  # heavy (Pillow, fonts): only when needed

    width, height = IMAGE_SIZE
    return ImageCaptcha(width=width, height=height).generate(answer, format="png").getvalue()
