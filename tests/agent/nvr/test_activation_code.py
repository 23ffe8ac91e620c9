"""Activation codes: the check character catches every single substitution and every
adjacent transposition; people's typing is read generously."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ActivationCodeError, CodeMistypedError
from agent.nvr import activation_code as ac
from tests.examples import examples

BODY = st.text(alphabet=ac.ALPHABET, min_size=ac.BODY_LENGTH, max_size=ac.BODY_LENGTH)


def compact(code: str) -> str:
    return code.replace("-", "")


def test_alphabet_is_unambiguous() -> None:
    assert len(ac.ALPHABET) == len(set(ac.ALPHABET)) == 32
    assert not set("ILOU") & set(ac.ALPHABET)


def test_generated_codes_have_the_documented_form_and_validate() -> None:
    codes = {ac.generate() for _ in range(500)}
    assert len(codes) == 500  # 55 random bits: no repeats
    for code in codes:
        assert re.fullmatch(
            r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", code
        )
        assert ac.parse(code) == code


def _all_substitutions(code: str) -> list[str]:
    c = compact(code)
    return [c[:i] + x + c[i + 1 :] for i in range(len(c)) for x in ac.ALPHABET if x != c[i]]


def _all_adjacent_swaps(code: str) -> list[str]:
    c = compact(code)
    return [c[:i] + c[i + 1] + c[i] + c[i + 2 :] for i in range(len(c) - 1) if c[i] != c[i + 1]]


@settings(max_examples=examples(300), deadline=None)
@given(BODY)
def test_every_single_substitution_is_caught(body: str) -> None:
    code = body + ac.check_character(body)
    for typo in _all_substitutions(code):  # 12 positions, 31 wrong characters each
        with pytest.raises(CodeMistypedError, match="looks mistyped"):
            ac.parse(typo)


@settings(max_examples=examples(300), deadline=None)
@given(BODY)
def test_every_adjacent_transposition_is_caught(body: str) -> None:
    code = body + ac.check_character(body)
    for swapped in _all_adjacent_swaps(code):
        with pytest.raises(CodeMistypedError):
            ac.parse(swapped)


def test_exhaustively_on_adjacent_pairs_of_the_field() -> None:
    """Every pair of characters, swapped, at every position of a fixed body."""
    base = "0000000000"
    for x in ac.ALPHABET:
        for y in ac.ALPHABET:
            if x == y:
                continue
            for pos in range(ac.BODY_LENGTH - 1):
                body = (base[:pos] + x + y + base[pos:])[: ac.BODY_LENGTH]
                code = body + ac.check_character(body)
                swapped = code[:pos] + y + x + code[pos + 2 :]
                with pytest.raises(CodeMistypedError):
                    ac.parse(swapped)


@pytest.mark.parametrize(
    "typed",
    [
        "{c}",
        "{l}",
        "{n}",
        "  {l}  ",
        "{s}",
        "{x}",
    ],
)
def test_tolerant_reading(typed: str) -> None:
    body = "1B0E1101K7Q"
    code = ac.format_code(body + ac.check_character(body))
    variants = {
        "c": code,
        "l": code.lower(),
        "n": compact(code),
        "s": code.replace("-", " "),
        # what people type for 0 and 1
        "x": code.replace("0", "O").replace("1", "l", 1).replace("1", "I"),
    }
    assert ac.parse(typed.format(**variants)) == code


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ABCD-EFGH-JK1", "12 characters"),
        ("ABCD-EFGH-JK123", "12 characters"),
        ("", "12 characters"),
        ("ABCD-EFGH-JKU2", "no 'U'"),
        ("ABCD-EFGH-JK!2", "no '!'"),
    ],
)
def test_unreadable_codes_say_why(text: str, words: str) -> None:
    with pytest.raises(ActivationCodeError, match=re.escape(words)) as caught:
        ac.parse(text)
    assert not isinstance(caught.value, CodeMistypedError)


@given(st.text(max_size=40))
def test_any_text_is_a_code_or_a_clear_error(text: str) -> None:
    try:
        parsed = ac.parse(text)
    except ActivationCodeError as exc:
        message = str(exc)
        assert message
    else:
        assert re.fullmatch(r"\w{4}-\w{4}-\w{4}", parsed)


def test_non_text_is_an_error() -> None:
    with pytest.raises(ActivationCodeError):
        ac.parse(1234)  # type: ignore[arg-type]
