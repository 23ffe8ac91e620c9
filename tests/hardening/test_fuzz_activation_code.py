"""Fuzzing NVR activation codes: any text is a code or an ActivationCodeError that says why."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ActivationCodeError, CodeMistypedError
from agent.nvr.activation_code import ALPHABET, LENGTH, format_code, generate, parse
from tests.examples import examples
from tests.hardening.strategies import refusal

codes = st.builds(lambda _: generate(), st.integers())
code_ish = st.text(alphabet=ALPHABET + "OIL-oil \t", max_size=20)


@settings(max_examples=examples(600))
@given(st.one_of(st.text(max_size=40), code_ish))
def test_any_text_is_a_code_or_a_clear_refusal(text: str) -> None:
    if refusal(parse, text, allowed=ActivationCodeError):
        return
    code = parse(text)
    assert len(code) == LENGTH + 2
    assert parse(code) == code  # canonical form is a fixed point


@settings(max_examples=examples(300))
@given(
    codes,
    st.sampled_from([str.lower, str.upper, lambda c: c.replace("-", ""), lambda c: f"  {c} "]),
)
def test_how_people_type_a_code_does_not_matter(code: str, typed: object) -> None:
    assert parse(typed(code)) == code  # type: ignore[operator]
    confused = code.replace("0", "O").replace("1", "l")
    assert parse(confused) == code


def _compact(code: str) -> str:
    return code.replace("-", "")


@settings(max_examples=examples(400))
@given(codes, st.integers(0, LENGTH - 1), st.sampled_from(ALPHABET))
def test_any_single_typo_is_caught(code: str, position: int, char: str) -> None:
    compact = _compact(code)
    if compact[position] == char:
        return
    typo = compact[:position] + char + compact[position + 1 :]
    with pytest.raises(CodeMistypedError, match="mistyped"):
        parse(format_code(typo))


@settings(max_examples=examples(400))
@given(codes, st.integers(0, LENGTH - 2))
def test_any_adjacent_swap_is_caught(code: str, position: int) -> None:
    compact = _compact(code)
    a, b = compact[position], compact[position + 1]
    if a == b:
        return
    swapped = compact[:position] + b + a + compact[position + 2 :]
    with pytest.raises(CodeMistypedError):
        parse(swapped)


def test_non_text_is_refused() -> None:
    for value in (None, 123, b"ABCD-EFGH-JK12", ["x"]):
        with pytest.raises(ActivationCodeError):
            parse(value)  # type: ignore[arg-type]
