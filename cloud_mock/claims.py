"""Claims on a device ID: the pure rules (no I/O, time passed in).

An add in the cloud is a claim: (org, K = scrypt(password, device_id), signed token). A
device ID may carry several open claims from different organizations (at most
`MAX_OPEN_CLAIMS`, one per org). A poll's proof is checked against every open claim, and
of those whose K verifies the newest wins. The check always computes `PROOF_SLOTS` HMACs
(dummy keys fill the empty slots), so an unknown device, a wrong proof and a device with
claims cost the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from agent.provisioning.wire import KEY_LEN, PollRequest, proof_matches
from cloud_mock.store import Camera

MAX_OPEN_CLAIMS = 8
# Every open camera claim, plus the NVR entry a device ID may have.
PROOF_SLOTS = MAX_OPEN_CLAIMS + 1
_DUMMY_KEYS = tuple(os.urandom(KEY_LEN) for _ in range(PROOF_SLOTS))


def is_live(claim: Camera, now: float, ttl_s: float) -> bool:
    """Open, and either used (proven by a poll, or its token said hello: a camera set up
    with `finder push` never polls) or younger than the claim TTL."""
    if claim.key is None or claim.moved_at is not None or claim.dropped_at is not None:
        return False
    return claim.connected or now < claim.claimed_at + ttl_s


def live_claims(claims: Sequence[Camera], now: float, ttl_s: float) -> list[Camera]:
    """The live ones, oldest first; never more than the bound (the newest kept)."""
    live = sorted((c for c in claims if is_live(c, now, ttl_s)), key=_age)
    return live[-MAX_OPEN_CLAIMS:]


def expired(claims: Sequence[Camera], now: float, ttl_s: float) -> list[Camera]:
    """Open claims the TTL has run out on (to be closed)."""
    return [c for c in claims if c.key is not None and not is_live(c, now, ttl_s)]


def to_drop_for_new(live: Sequence[Camera]) -> Camera | None:
    """Making room for one more claim: the oldest unproven one goes, if the bound is hit.

    Only a poll's proof counts here: a hello shows a token, which whoever added the
    camera holds, not the device's password (a squatter could say hello as the device).
    """
    if len(live) < MAX_OPEN_CLAIMS:
        return None
    unproven = [c for c in live if c.proven_at is None]
    return min(unproven, key=_age) if unproven else min(live, key=_age)


@dataclass(frozen=True)
class Verdict:
    """What one poll proved: the winning claim (if any), which claims' K verified, and
    whether the NVR entry's secret did."""

    winner: Camera | None
    verified: frozenset[str]  # camera_ids
    nvr_verified: bool

    def result_for(self, claim: Camera) -> str:
        """The row this poll leaves in a claim's history."""
        if self.winner is not None and claim.camera_id == self.winner.camera_id:
            return "token"
        return "none" if claim.camera_id in self.verified else "bad_proof"


def verify(claims: Sequence[Camera], nvr_key: bytes | None, poll: PollRequest) -> Verdict:
    """Check the proof against every claim and the NVR entry, always `PROOF_SLOTS` HMACs."""
    claims = [c for c in claims if c.key is not None]
    if len(claims) > MAX_OPEN_CLAIMS:
        raise ValueError(f"at most {MAX_OPEN_CLAIMS} open claims are checked")
    keys: list[bytes] = [c.key for c in claims if c.key is not None]
    keys.append(nvr_key if nvr_key is not None else _DUMMY_KEYS[-1])
    keys.extend(_DUMMY_KEYS[len(keys) - 1 : PROOF_SLOTS - 1])
    matches = [proof_matches(k, poll.device_id, poll.ts, poll.nonce, poll.proof) for k in keys]
    verified = [c for c, ok in zip(claims, matches, strict=False) if ok]
    winner = max(verified, key=_age) if verified else None
    return Verdict(
        winner,
        frozenset(c.camera_id for c in verified),
        nvr_key is not None and matches[len(claims)],
    )


def to_move(claims: Sequence[Camera], verdict: Verdict) -> list[Camera]:
    """The claims that lose the device when the verdict's winner wins: other
    organizations' claims the device was connected under, *if this poll proved their K
    too* (the device still has the password they registered).

    Whoever adds a camera can poll as the device with the password they chose, so a
    claim proving only its own K must not take the device from anyone: otherwise a MAC
    squatter polling with a made-up password would revoke the owner's token. Moving a
    camera therefore needs its current password (the label's), as the story goes: the
    new owner adds the camera with the label password and resets it.
    """
    winner = verdict.winner
    if winner is None:
        return []
    return [
        c
        for c in claims
        if c.org != winner.org
        and c.connected
        and c.moved_at is None
        and c.camera_id in verdict.verified
    ]


def _age(claim: Camera) -> tuple[float, float]:
    return (claim.claimed_at, claim.created)
