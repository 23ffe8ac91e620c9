"""Login captchas (DESIGN §4): issued, checked once, dead after 60 s of the mock clock.

`CaptchaBook` is the pure bookkeeping (no I/O, time passed in); `render_png` draws the
image with the `captcha` library, imported only when a captcha is actually made.

Each client address holds at most one live captcha: asking for another ("refresh")
kills the previous one, which also bounds the memory a client can make the mock use.
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


class CaptchaCheck(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # never issued, already used, or replaced by a newer one


CHECK_MESSAGES = {
    CaptchaCheck.WRONG: "wrong captcha answer; solve the new captcha",
    CaptchaCheck.EXPIRED: (
        f"the captcha expired (it is valid for {CAPTCHA_TTL_S:g} s); solve the new captcha"
    ),
    CaptchaCheck.UNKNOWN: (
        "unknown captcha: it was already used or replaced by a newer one; solve the new captcha"
    ),
}


@dataclass(frozen=True)
class Captcha:
    id: str
    answer: str
    client: str
    expires_at: float


def normalize_answer(answer: str) -> str:
    """Answers are case-insensitive and may come with stray spaces."""
    return "".join(answer.split()).upper()


def new_answer(length: int = ANSWER_LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class CaptchaBook:
    """Live captchas by id, one per client."""

    def __init__(self, max_live: int = MAX_LIVE) -> None:
        self._by_id: OrderedDict[str, Captcha] = OrderedDict()
        self._by_client: dict[str, str] = {}
        self._max_live = max_live

    def __len__(self) -> int:
        return len(self._by_id)

    def issue(self, client: str, now: float) -> Captcha:
        """A new captcha for `client`; its previous one (if any) is dead from now on."""
        old = self._by_client.pop(client, None)
        if old is not None:
            self._by_id.pop(old, None)
        while len(self._by_id) >= self._max_live:
            _, oldest = self._by_id.popitem(last=False)
            self._by_client.pop(oldest.client, None)
        captcha = Captcha(secrets.token_urlsafe(16), new_answer(), client, now + CAPTCHA_TTL_S)
        self._by_id[captcha.id] = captcha
        self._by_client[client] = captcha.id
        return captcha

    def check(self, captcha_id: str, answer: str, now: float) -> CaptchaCheck:
        """Consume `captcha_id` and say whether `answer` solves it in time."""
        captcha = self._by_id.pop(captcha_id, None)
        if captcha is None:
            return CaptchaCheck.UNKNOWN
        if self._by_client.get(captcha.client) == captcha_id:
            del self._by_client[captcha.client]
        if now >= captcha.expires_at:
            return CaptchaCheck.EXPIRED
        if not secrets.compare_digest(normalize_answer(answer).encode(), captcha.answer.encode()):
            return CaptchaCheck.WRONG
        return CaptchaCheck.OK

    def peek(self, captcha_id: str) -> Captcha | None:
        """The live captcha with this id, without consuming it (test hooks only)."""
        return self._by_id.get(captcha_id)


def render_png(answer: str) -> bytes:
    """The captcha picture (PNG). CPU work of a few ms: call it through a thread."""
    from captcha.image import ImageCaptcha  # heavy (Pillow, fonts): only when needed

    width, height = IMAGE_SIZE
    return ImageCaptcha(width=width, height=height).generate(answer, format="png").getvalue()
