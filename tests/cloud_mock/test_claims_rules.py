"""The pure claim rules of cloud_mock/claims.py, with times passed in."""

from __future__ import annotations

import dataclasses

import pytest

from agent.provisioning.wire import PollRequest
from cloud_mock import claims
from cloud_mock.claims import MAX_OPEN_CLAIMS, PROOF_SLOTS
from cloud_mock.store import Camera

DEVICE = "aa:bb:cc:dd:ee:01"
TTL = 100.0


def claim(n: int, *, key: bytes | None = None, at: float = 0.0, **changes: object) -> Camera:
    base = Camera(
        f"c{n}",
        f"org{n}",
        DEVICE,
        "cam",
        at,
        f"j{n}",
        None,
        None,
        key if key is not None else bytes([n]) * 32,
        f"token-{n}",
        at,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def poll_with(key: bytes) -> PollRequest:
    return PollRequest.build(key, DEVICE, 1000, 0)


def test_live_means_open_and_proven_or_young() -> None:
    assert claims.is_live(claim(1, at=0.0), now=99.0, ttl_s=TTL)
    assert not claims.is_live(claim(1, at=0.0), now=100.0, ttl_s=TTL)
    assert claims.is_live(claim(1, at=0.0, proven_at=5.0), now=1e9, ttl_s=TTL)
    # A camera whose token said hello (set up by `finder push`, never polled) stays too.
    assert claims.is_live(claim(1, at=0.0, hello_at=5.0), now=1e9, ttl_s=TTL)
    assert not claims.is_live(claim(1, moved_at=1.0), now=0.0, ttl_s=TTL)
    assert not claims.is_live(claim(1, dropped_at=1.0), now=0.0, ttl_s=TTL)
    expired = claims.expired([claim(1, at=0.0), claim(2, at=50.0)], now=120.0, ttl_s=TTL)
    assert [c.camera_id for c in expired] == ["c1"]


def test_the_oldest_unproven_claim_gives_way_at_the_bound() -> None:
    live = [claim(n, at=float(n)) for n in range(1, MAX_OPEN_CLAIMS + 1)]
    assert claims.to_drop_for_new(live[:-1]) is None
    live[0] = dataclasses.replace(live[0], proven_at=9.0)  # the holder stays
    # A hello proves no password (a squatter can say hello with his own token).
    live[1] = dataclasses.replace(live[1], hello_at=9.0)
    dropped = claims.to_drop_for_new(live)
    assert dropped is not None
    assert dropped.camera_id == "c2"


def test_the_newest_verified_claim_wins() -> None:
    same = b"s" * 32  # two orgs that know the same (label) password
    holder = claim(1, key=same, at=1.0, proven_at=2.0, hello_at=2.0)
    newer = claim(2, key=same, at=5.0)
    squatter = claim(3, at=9.0)
    verdict = claims.verify([holder, newer, squatter], None, poll_with(same))
    assert verdict.winner == newer
    assert verdict.verified == {"c1", "c2"}
    assert [verdict.result_for(c) for c in (holder, newer, squatter)] == [
        "none",
        "token",
        "bad_proof",
    ]
    assert claims.to_move([holder, newer, squatter], verdict) == [holder]


def test_a_claim_proving_only_its_own_password_moves_nobody() -> None:
    holder = claim(1, at=1.0, proven_at=2.0, hello_at=2.0)
    squatter = claim(2, at=5.0)
    verdict = claims.verify([holder, squatter], None, poll_with(squatter.key or b""))
    assert verdict.winner == squatter
    assert claims.to_move([holder, squatter], verdict) == []


def test_the_nvr_entry_is_checked_in_its_own_slot() -> None:
    nvr = b"n" * 32
    verdict = claims.verify([claim(1)], nvr, poll_with(nvr))
    assert (verdict.winner, verdict.nvr_verified) == (None, True)
    assert not claims.verify([claim(1)], nvr, poll_with(b"x" * 32)).nvr_verified
    assert not claims.verify([], None, poll_with(b"x" * 32)).nvr_verified


@pytest.mark.parametrize("count", [0, 1, 3, MAX_OPEN_CLAIMS])
@pytest.mark.parametrize("nvr", [None, b"n" * 32])
@pytest.mark.parametrize("right", [True, False])
def test_every_poll_costs_the_same_number_of_hmacs(
    monkeypatch: pytest.MonkeyPatch, count: int, nvr: bytes | None, right: bool
) -> None:
    calls: list[bytes] = []
    real = claims.proof_matches

    def counting(key: bytes, *args: object) -> bool:
        calls.append(key)
        return real(key, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(claims, "proof_matches", counting)
    open_claims = [claim(n, at=float(n)) for n in range(1, count + 1)]
    key = open_claims[0].key if (right and open_claims) else b"w" * 32
    claims.verify(open_claims, nvr, poll_with(key or b""))
    assert len(calls) == PROOF_SLOTS
    assert len(set(calls)) == PROOF_SLOTS  # real keys, then distinct dummies


def test_more_claims_than_the_bound_are_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        claims.verify([claim(n) for n in range(1, MAX_OPEN_CLAIMS + 2)], None, poll_with(b"k"))
