"""Login captchas (docs/design.md §4): issued, checked once, dead after 60 s of the mock clock.

`CaptchaBook` is the pure bookkeeping (no I/O, time passed in); `render_png` draws the
image with the `captcha` library, imported only when a captcha is actually made.

A captcha belongs to the login attempt it was drawn for: one drawn in a login's 428
(or asked for with `?login=`) solves only that login. A captcha dies only when it is
checked, expires, or is replaced by its own refresh (`?replaces=ID`): never to make room.
A client address (an IPv6 /64) holds at most `MAX_PER_CLIENT` live captchas *per login*
(and as many drawn for no login); past that, a draw is refused until its oldest expires
(`CaptchaFull`), so that people behind one address (an office) never kill each other's
captchas, by refreshing or by drawing many (issues 17, 25). Drawing is rate-limited too
(login_guard.RenderBudget), which bounds the memory and the CPU a client can make the mock
spend: that budget lets far fewer than `MAX_LIVE` be drawn within a captcha's lifetime,
so `MAX_LIVE` is a last bound that the budget keeps from ever being reached.
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
MAX_PER_CLIENT = 8  # live captchas of one client address for one login (or for none)


class CaptchaFull(Exception):
    """This client holds `MAX_PER_CLIENT` live captchas for this login already."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f} s")
        self.retry_after = retry_after


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
    """Live captchas by id, at most MAX_PER_CLIENT per (client address, login)."""

    def __init__(self, max_live: int = MAX_LIVE, max_per_client: int = MAX_PER_CLIENT) -> None:
        self._by_id: OrderedDict[str, Captcha] = OrderedDict()
        self._by_bucket: dict[tuple[str, str], OrderedDict[str, None]] = {}
        self._max_live = max_live
        self._max_per_client = max_per_client

    def __len__(self) -> int:
        return len(self._by_id)

    def room(self, client: str, now: float, login: str | None = None, replaces: str = "") -> None:
        """Raise CaptchaFull if `client` may not draw another captcha for `login` now (a
        refresh of one of its own always may). Call before the image is drawn."""
        if replaces and replaces in self._by_id:
            return
        bucket = self._by_bucket.get(_bucket(client, login))
        if bucket is None:
            return
        for captcha_id in list(bucket):  # expired ones make room
            captcha = self._by_id.get(captcha_id)
            if captcha is None or captcha.expires_at <= now:
                self._take(captcha_id)
        bucket = self._by_bucket.get(_bucket(client, login))
        if bucket is not None and len(bucket) >= self._max_per_client:
            oldest = self._by_id[next(iter(bucket))]
            raise CaptchaFull(max(1.0, oldest.expires_at - now))

    def issue(
        self, client: str, now: float, login: str | None = None, replaces: str = ""
    ) -> Captcha:
        """A new captcha for `client` (for `login` only, when given). `replaces`, a
        captcha id, dies: a refresh. A replaced captcha's login carries over. Raises
        CaptchaFull as `room` does."""
        old = self._take(replaces) if replaces else None
        if old is not None and login is None:
            login = old.login
        self.room(client, now, login)
        while len(self._by_id) >= self._max_live:  # never reached under the render budget
            self._take(next(iter(self._by_id)))
        captcha = Captcha(
            secrets.token_urlsafe(16), new_answer(), client, now + CAPTCHA_TTL_S, login
        )
        self._by_id[captcha.id] = captcha
        self._by_bucket.setdefault(_bucket(client, login), OrderedDict())[captcha.id] = None
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
            key = _bucket(captcha.client, captcha.login)
            bucket = self._by_bucket.get(key)
            if bucket is not None:
                bucket.pop(captcha_id, None)
                if not bucket:
                    del self._by_bucket[key]
        return captcha

    def peek(self, captcha_id: str) -> Captcha | None:
        """The live captcha with this id, without consuming it (test hooks only)."""
        return self._by_id.get(captcha_id)


def _bucket(client: str, login: str | None) -> tuple[str, str]:
    # "\0" is no login (a login is printable text): draws for no login share one bucket.
    return (client, "\0" if login is None else login)


def render_png(answer: str) -> bytes:
    """The captcha picture (PNG). CPU work of a few ms: call it through a thread."""
    from captcha.image import ImageCaptcha  # heavy (Pillow, fonts): only when needed

    width, height = IMAGE_SIZE
    return ImageCaptcha(width=width, height=height).generate(answer, format="png").getvalue()
