"""NVR activation codes `XXXX-XXXX-XXXX` (docs/design.md §3).

Eleven random characters and one check character from Crockford's base-32 alphabet
(no I, L, O, U: nothing to confuse). The check is a Damm-style scheme over the field
GF(32): the running check `r` takes each character `d` to `a·r + d`, and the check
character brings it to 0. Because `x ↦ a·r + x` and `r ↦ a·r + d` are both bijections,
any single substitution changes the result; and `a·(a·r + x) + y = a·(a·r + y) + x`
forces `x = y` (as `a + 1 ≠ 0`), so any adjacent transposition does too.
"""

from __future__ import annotations

import secrets

from agent.errors import ActivationCodeError, CodeMistypedError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
# What people type for what they meant (Crockford): O is zero, I and L are one.
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
BODY_LENGTH = 11
LENGTH = BODY_LENGTH + 1
GROUP = 4

_POLY = 0b100101  # x^5 + x^2 + 1, irreducible: GF(2^5)
_A = 2  # the multiplier: any field element other than 0 and 1


def _mul(x: int, y: int) -> int:
    """Multiplication in GF(32)."""
    product = 0
    while y:
        if y & 1:
            product ^= x
        y >>= 1
        x <<= 1
        if x & 0b100000:
            x ^= _POLY
    return product


def _running_check(values: list[int]) -> int:
    check = 0
    for value in values:
        check = _mul(_A, check) ^ value
    return check


def check_character(body: str) -> str:
    """The character that completes `body` (11 alphabet characters) to a valid code."""
    return ALPHABET[_mul(_A, _running_check([_VALUE[c] for c in body]))]


def generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return format_code(body + check_character(body))


def format_code(compact: str) -> str:
    return "-".join(compact[i : i + GROUP] for i in range(0, len(compact), GROUP))


def parse(text: str) -> str:
    """Read a code as a person typed it; return it as `XXXX-XXXX-XXXX`.

    Case, dashes and spaces do not matter, O reads as 0 and I/L as 1. Raises
    ActivationCodeError for the wrong length or characters, and CodeMistypedError
    when the check character does not match (a typo, not an unknown code).
    """
    if not isinstance(text, str):
        raise ActivationCodeError("an activation code is text like ABCD-EFGH-JK13")
    compact = "".join(text.split()).replace("-", "").upper().translate(_READ_AS)
    if len(compact) != LENGTH:
        raise ActivationCodeError(
            f"an activation code has {LENGTH} characters (XXXX-XXXX-XXXX); "
            f"this one has {len(compact)}"
        )
    wrong = sorted({c for c in compact if c not in _VALUE})
    if wrong:
        raise ActivationCodeError(
            f"an activation code has no {', '.join(repr(c) for c in wrong)} in it"
        )
    if _running_check([_VALUE[c] for c in compact]) != 0:
        raise CodeMistypedError(
            f"{format_code(compact)} looks mistyped: check it against the code the NVR shows"
        )
    return format_code(compact)
