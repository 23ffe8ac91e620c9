"""Claims on a device ID: the pure rules (no I/O, time passed in).

An add in the cloud is a claim: (org, K = scrypt(password, device_id), signed token). A
device ID may carry claims from any number of organizations (one each), but a poll
checks only `MAX_OPEN_CLAIMS` of them, its *places* (`places_for`):

1. claims a poll has proven, then claims whose token said hello (a camera set up by a
   LAN push never polls), each in the order they got there: a place once held by a
   proven or connected claim is never taken by another org's add, nor by anything
   else another org can do;
2. the other claims, newest add first, fill what is left: when a device already has
   eight, a new add takes the place of the oldest unproven one; when all eight are
   proven or connected, the new claim waits outside. Either way it answers exactly as a
   fresh add, and a claim outside the places looks exactly like one inside (`waiting`,
   an empty history); it comes back in when a place frees, if it has not expired.

An unproven claim expires `claim_ttl_s` after its add (`Camera.created`): changing its
password (PATCH) does not move that. A poll's proof is checked against the eight places
and the NVR entry: always `PROOF_SLOTS` HMACs, the empty places filled with dummy keys,
in one loop that does the same steps whatever a place holds, so that an unknown device,
a wrong proof and a device with claims cost the same. Of the live claims whose K
verifies, the newest add wins.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.provisioning.wire import KEY_LEN, PollRequest, proof_matches

if TYPE_CHECKING:  # the store imports this module (it keeps every device's places)
    from cloud_mock.store import Camera

MAX_OPEN_CLAIMS = 8
# Every place, plus the NVR entry a device ID may have.
PROOF_SLOTS = MAX_OPEN_CLAIMS + 1
_DUMMY_KEYS = tuple(os.urandom(KEY_LEN) for _ in range(PROOF_SLOTS))


@dataclass(frozen=True, slots=True)
class Place:
    """What a poll needs of one claim; a dummy (`camera_id` "") in an empty place."""

    camera_id: str
    org: str
    key: bytes
    created: float  # the add: an unproven claim expires claim_ttl_s after it
    connected: bool  # proven by a poll, or its token said hello: it never expires

    def live(self, now: float, ttl_s: float) -> bool:
        """The same comparison for every place (a dummy was added at -inf)."""
        return self.connected or now < self.created + ttl_s

    def __repr__(self) -> str:  # never K in a log line
        return f"Place({self.camera_id!r}, org={self.org!r})"


EMPTY_PLACES: tuple[Place, ...] = tuple(
    Place("", "", key, -math.inf, False) for key in _DUMMY_KEYS[:MAX_OPEN_CLAIMS]
)


def is_live(claim: Camera, now: float, ttl_s: float) -> bool:
    """Open, and either used (proven by a poll, or its token said hello) or younger than
    the claim TTL, counted from the add (a password change does not renew it)."""
    if claim.key is None or claim.moved_at is not None or claim.dropped_at is not None:
        return False
    return claim.connected or now < claim.created + ttl_s


def places_for(open_claims: Iterable[Camera]) -> tuple[Place, ...]:
    """The `MAX_OPEN_CLAIMS` places of a device, padded with dummies (see the module).

    The order never lets a proven or connected claim lose its place: a claim becomes
    proven only while it has a place, a first hello ranks after every earlier one, and
    adds rank after both.
    """
    proven, hello, waiting = [], [], []
    for claim in open_claims:
        if claim.key is None or claim.moved_at is not None or claim.dropped_at is not None:
            continue
        if claim.proven_at is not None:
            proven.append(claim)
        elif claim.hello_at is not None:
            hello.append(claim)
        else:
            waiting.append(claim)
    proven.sort(key=lambda c: (c.proven_at, c.created, c.camera_id))
    hello.sort(key=lambda c: (c.hello_at, c.created, c.camera_id))
    waiting.sort(key=lambda c: (-c.created, c.camera_id))
    chosen = (proven + hello + waiting)[:MAX_OPEN_CLAIMS]
    places = [Place(c.camera_id, c.org, c.key or b"", c.created, c.connected) for c in chosen]
    return (*places, *EMPTY_PLACES[len(places) :])


@dataclass(frozen=True)
class Verdict:
    """What one poll proved: the winning claim (if any), the live claims whose K
    verified (in place order), whether the NVR entry's secret did, and whether the
    device has any claim at all (for the operator's aggregate only)."""

    winner: Place | None
    verified: tuple[Place, ...]
    nvr_verified: bool
    claimed: bool

    def result_for(self, camera_id: str) -> str | None:
        """The row this poll leaves in a claim's history: only a claim whose K the proof
        verified gets one (`token`: it won; `none`: a newer claim with the same password
        won); to every other claim the poll is none of its business."""
        if self.winner is not None and camera_id == self.winner.camera_id:
            return "token"
        return "none" if any(p.camera_id == camera_id for p in self.verified) else None


def verify(
    places: Sequence[Place], nvr_key: bytes | None, poll: PollRequest, now: float, ttl_s: float
) -> Verdict:
    """Check the proof against every place and the NVR entry: `PROOF_SLOTS` HMACs, and for
    each place the same steps (match, live, claimed) whether it holds a claim or not."""
    if len(places) != MAX_OPEN_CLAIMS:
        raise ValueError(f"a poll checks exactly {MAX_OPEN_CLAIMS} places, not {len(places)}")
    device_id, ts, nonce, proof = poll.device_id, poll.ts, poll.nonce, poll.proof
    nvr_ok = proof_matches(
        nvr_key if nvr_key is not None else _DUMMY_KEYS[-1], device_id, ts, nonce, proof
    )
    verified: list[Place] = []
    claimed = False
    for place in places:
        matched = proof_matches(place.key, device_id, ts, nonce, proof)
        live = place.live(now, ttl_s)
        claimed |= place.camera_id != ""
        if matched & live:
            verified.append(place)
    winner = max(verified, key=lambda p: (p.created, p.camera_id)) if verified else None
    return Verdict(winner, tuple(verified), nvr_key is not None and nvr_ok, claimed)


def to_move(verdict: Verdict) -> list[Place]:
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
    return [p for p in verdict.verified if p.org != winner.org and p.connected]
