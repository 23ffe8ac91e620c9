"""How many examples a property test draws: the number its author chose, or a fifth of it
in the fast tier (`scripts/test.sh --fast` sets CAMAGENT_TESTS_FAST=1), where a quick
answer is worth more than a deep search; the full run always searches as deep as written."""

from __future__ import annotations

import os

FAST = os.environ.get("CAMAGENT_TESTS_FAST") == "1"
FAST_SHARE = 5


def examples(count: int) -> int:
    return max(10, count // FAST_SHARE) if FAST else count
