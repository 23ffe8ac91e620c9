"""Hypothesis strategies shared by the fuzz tests: hostile text, bytes and JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Scalars that trip parsers: huge and negative ints, NaN/inf, empty and odd strings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud7ff", "a" * 300, "../../etc/passwd", "%00", "😀"]),
)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=12), children, max_size=5),
    ),
    max_leaves=20,
)


def json_bytes(value: Any) -> bytes:
    """JSON as a client would send it (NaN/Infinity included: Python emits them)."""
    return json.dumps(value).encode()


def deep_nesting(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def refusal(fn: Any, *args: Any, allowed: type[Exception] | tuple[type[Exception], ...]) -> str:
    """Call `fn`; return "" if it accepted, the message if it raised an allowed error.

    Any other exception propagates and fails the test: that is the crash being fuzzed for.
    """
    try:
        fn(*args)
    except allowed as exc:
        error: Exception = exc
    else:
        return ""
    assert str(error).strip(), f"{type(error).__name__} without a message"
    return str(error)
