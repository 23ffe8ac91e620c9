"""The mock hashes users' passwords at scrypt's production cost (tests/conftest.py lowers it
for in-process mocks only; a new interpreter shows the shipped value)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_stored_password_hash_records_the_production_cost() -> None:
    script = "from cloud_mock.user_accounts import hash_password; print(hash_password('pw'))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    scheme, n, r, p, _salt, _digest = result.stdout.strip().split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")


def test_the_in_process_mocks_of_the_tests_use_a_cheaper_one() -> None:
    from cloud_mock.user_accounts import hash_password, verify_password

    stored = hash_password("pw")
    assert stored.split("$")[1] == str(2**10)
    assert verify_password("pw", stored)
    assert not verify_password("pW", stored)
