"""The pure claim rules of cloud_mock/claims.py, with times passed in: which claims hold a
device's eight places, who wins a poll, what a poll costs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.provisioning import wire
from agent.provisioning.wire import PollRequest
from cloud_mock import claims
from cloud_mock.claims import EMPTY_PLACES, MAX_OPEN_CLAIMS, PROOF_SLOTS, Place
from cloud_mock.store import Camera

DEVICE = "aa:bb:cc:dd:ee:01"
TTL = 100.0
NOW = 50.0


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


def placed(open_claims: list[Camera]) -> list[str]:
    return [p.camera_id for p in claims.places_for(open_claims) if p.camera_id]


def poll_with(key: bytes) -> PollRequest:
    return PollRequest.build(key, DEVICE, 1000, 0)


def verify(open_claims: list[Camera], key: bytes, nvr: bytes | None = None) -> claims.Verdict:
    return claims.verify(claims.places_for(open_claims), nvr, poll_with(key), NOW, TTL)


def test_live_means_open_and_connected_or_young_counted_from_the_add() -> None:
    assert claims.is_live(claim(1, at=0.0), now=99.0, ttl_s=TTL)
    assert not claims.is_live(claim(1, at=0.0), now=100.0, ttl_s=TTL)
    # A password changed (PATCH) at 90 does not renew the claim: it still ends at 100.
    assert not claims.is_live(claim(1, at=0.0, claimed_at=90.0), now=100.0, ttl_s=TTL)
    assert claims.is_live(claim(1, at=0.0, proven_at=5.0), now=1e9, ttl_s=TTL)
    # A camera whose token said hello (set up by a LAN push, never polled) stays too.
    assert claims.is_live(claim(1, at=0.0, hello_at=5.0), now=1e9, ttl_s=TTL)
    assert not claims.is_live(claim(1, moved_at=1.0), now=0.0, ttl_s=TTL)
    assert not claims.is_live(claim(1, dropped_at=1.0), now=0.0, ttl_s=TTL)
    # The same in a place: a PATCH leaves `created` alone.
    [place] = [p for p in claims.places_for([claim(1, claimed_at=90.0)]) if p.camera_id]
    assert place.live(99.0, TTL)
    assert not place.live(100.0, TTL)


def test_proven_or_connected_claims_keep_their_places_against_any_add() -> None:
    """M1: the owner's claim, proven and connected, and seven squatters' claims each
    proven by a poll with the squatter's own password; an eighth squatter's add finds
    no place, and the owner keeps his."""
    owner = claim(1, at=1.0, proven_at=2.0, hello_at=2.0)
    squatters = [claim(n, at=float(n), proven_at=float(n) + 0.5) for n in range(2, 9)]
    before = placed([owner, *squatters])
    assert before == ["c1", *[c.camera_id for c in squatters]]
    late = claim(9, at=100.0)
    assert placed([owner, *squatters, late]) == before
    # Connected by hello alone counts the same: an add never takes such a place.
    hellos = [claim(n, at=float(n), hello_at=float(n) + 0.5) for n in range(2, 9)]
    assert placed([owner, *hellos, late]) == ["c1", *[c.camera_id for c in hellos]]
    # The owner's label password still wins the device's next poll (after a reset).
    verdict = verify([owner, *squatters, late], owner.key or b"")
    assert verdict.winner is not None
    assert verdict.winner.camera_id == "c1"


def test_an_add_takes_the_place_of_the_oldest_unproven_claim_which_waits_outside() -> None:
    waiting = [claim(n, at=float(n)) for n in range(1, MAX_OPEN_CLAIMS + 1)]
    proven = dataclasses.replace(waiting[0], proven_at=9.0)
    assert placed(waiting) == [f"c{n}" for n in range(MAX_OPEN_CLAIMS, 0, -1)]
    newcomer = claim(9, at=9.0)
    assert "c1" not in placed([*waiting, newcomer])  # the oldest unproven waits outside
    assert "c2" not in placed([proven, *waiting[1:], newcomer])  # a proven one stays
    # Its password gets nothing while it is outside...
    assert verify([*waiting, newcomer], waiting[0].key or b"").winner is None
    # ...and it is back when a place frees (one of the newer claims deleted).
    assert "c1" in placed([*waiting[:-1], newcomer])


def test_a_first_hello_ranks_after_the_places_already_held() -> None:
    """A claim waiting outside whose token says hello takes an unproven claim's place,
    never a proven or connected one's."""
    held = [claim(n, at=float(n), hello_at=10.0 + n) for n in range(1, MAX_OPEN_CLAIMS)]
    young = claim(8, at=8.0)
    outside = claim(9, at=0.5)
    assert placed([*held, young, outside]) == [*[c.camera_id for c in held], "c8"]
    said_hello = dataclasses.replace(outside, hello_at=30.0)
    assert placed([*held, young, said_hello]) == [*[c.camera_id for c in held], "c9"]
    full = [*held, dataclasses.replace(young, hello_at=20.0)]
    assert placed([*full, said_hello]) == [c.camera_id for c in full]


# One step of a device's life: (what, which org).
_STEPS = st.lists(
    st.tuples(st.sampled_from(["add", "prove", "hello", "delete"]), st.integers(0, 13)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS)
def test_a_place_held_by_a_proven_or_connected_claim_is_only_lost_by_its_own_org(
    steps: list[tuple[str, int]],
) -> None:
    """Any sequence of adds, proofs (a poll proves only a claim that has a place), first
    hellos and deletes by up to 14 orgs: no proven or connected claim ever loses its
    place but by its own deletion, and never more than eight claims are proven."""
    open_claims: dict[int, Camera] = {}
    clock = 0.0
    for what, org in steps:
        clock += 1.0
        before = {p.camera_id for p in claims.places_for(open_claims.values()) if p.connected}
        current = open_claims.get(org)
        if what == "add" and current is None:
            open_claims[org] = claim(org, at=clock)
        elif what == "delete" and current is not None:
            del open_claims[org]
        elif what == "prove" and current is not None and current.proven_at is None:
            if current.camera_id in placed(list(open_claims.values())):
                open_claims[org] = dataclasses.replace(current, proven_at=clock)
        elif what == "hello" and current is not None and current.hello_at is None:
            open_claims[org] = dataclasses.replace(current, hello_at=clock)
        after = set(placed(list(open_claims.values())))
        gone = {f"c{org}"} if what == "delete" else set()
        assert before - gone <= after
        assert sum(c.proven_at is not None for c in open_claims.values()) <= MAX_OPEN_CLAIMS
        assert len(claims.places_for(open_claims.values())) == MAX_OPEN_CLAIMS


def test_the_newest_verified_claim_wins_and_only_verified_claims_get_a_row() -> None:
    same = b"s" * 32  # two orgs that know the same (label) password
    holder = claim(1, key=same, at=1.0, proven_at=2.0, hello_at=2.0)
    newer = claim(2, key=same, at=5.0)
    squatter = claim(3, at=9.0)
    verdict = verify([holder, newer, squatter], same)
    assert verdict.winner is not None
    assert verdict.winner.camera_id == "c2"
    assert {p.camera_id for p in verdict.verified} == {"c1", "c2"}
    # The squatter's history gets nothing of this poll: it did not prove his K.
    assert [verdict.result_for(c) for c in ("c1", "c2", "c3")] == ["none", "token", None]
    assert [p.camera_id for p in claims.to_move(verdict)] == ["c1"]


def test_a_later_password_change_does_not_make_a_claim_the_newest() -> None:
    same = b"s" * 32
    first = claim(1, key=same, at=1.0, claimed_at=40.0)  # PATCHed after the second add
    second = claim(2, key=same, at=5.0)
    verdict = verify([first, second], same)
    assert verdict.winner is not None
    assert verdict.winner.camera_id == "c2"


def test_an_expired_claim_verifies_nothing() -> None:
    old = claim(1, at=-TTL)  # its TTL ran out at 0, before NOW
    verdict = verify([old], old.key or b"")
    assert (verdict.winner, verdict.verified, verdict.claimed) == (None, (), True)


def test_a_claim_proving_only_its_own_password_moves_nobody() -> None:
    holder = claim(1, at=1.0, proven_at=2.0, hello_at=2.0)
    squatter = claim(2, at=5.0)
    verdict = verify([holder, squatter], squatter.key or b"")
    assert verdict.winner is not None
    assert verdict.winner.camera_id == "c2"
    assert claims.to_move(verdict) == []


def test_the_nvr_entry_is_checked_in_its_own_slot() -> None:
    nvr = b"n" * 32
    verdict = verify([claim(1)], nvr, nvr)
    assert (verdict.winner, verdict.nvr_verified) == (None, True)
    assert not verify([claim(1)], b"x" * 32, nvr).nvr_verified
    assert not verify([], b"x" * 32).nvr_verified
    assert not verify([], b"x" * 32).claimed


@pytest.mark.parametrize("count", [0, 1, 3, MAX_OPEN_CLAIMS, MAX_OPEN_CLAIMS + 3])
@pytest.mark.parametrize("nvr", [None, b"n" * 32])
@pytest.mark.parametrize("kind", ["wrong", "right", "expired"])
def test_every_poll_does_the_same_checks_whatever_the_claims(
    monkeypatch: pytest.MonkeyPatch, count: int, nvr: bytes | None, kind: str
) -> None:
    """PROOF_SLOTS HMACs with distinct keys, and a liveness test of each of the eight
    places, for no claim, one, eight or more (with a right, a wrong or an expired key)."""
    hmacs: list[bytes] = []
    lives: list[str] = []
    real_match, real_live = wire.proof_matches, Place.live

    def counting_match(key: bytes, *args: object) -> bool:
        hmacs.append(key)
        return real_match(key, *args)  # type: ignore[arg-type]

    def counting_live(self: Place, now: float, ttl_s: float) -> bool:
        lives.append(self.camera_id)
        return real_live(self, now, ttl_s)

    monkeypatch.setattr(claims, "proof_matches", counting_match)
    monkeypatch.setattr(Place, "live", counting_live)
    at = -TTL if kind == "expired" else 0.0
    open_claims = [claim(n, at=at + n / 100) for n in range(1, count + 1)]
    key = open_claims[0].key if (kind != "wrong" and open_claims) else b"w" * 32
    claims.verify(claims.places_for(open_claims), nvr, poll_with(key or b""), NOW, TTL)
    assert len(hmacs) == PROOF_SLOTS
    assert len(set(hmacs)) == PROOF_SLOTS  # real keys, then distinct dummies
    assert len(lives) == MAX_OPEN_CLAIMS


def test_a_poll_checks_exactly_the_eight_places() -> None:
    with pytest.raises(ValueError, match="exactly"):
        claims.verify(EMPTY_PLACES[:-1], None, poll_with(b"k" * 32), NOW, TTL)
    assert len(claims.places_for([])) == MAX_OPEN_CLAIMS
    assert "k" * 8 not in repr(claims.places_for([claim(1, key=b"k" * 32)])[0])
