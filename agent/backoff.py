"""Capped exponential backoff with jitter, pure (the caller passes the random draw)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int, draw: float) -> float:
        """Delay before the next try after `failures` consecutive failures.

        `draw` is uniform in [0, 1). The delay lies in the upper half of the window: the
        jitter spreads a fleet that lost the cloud at the same moment, and the lower
        bound keeps any one device from retrying at once.
        """
        if failures <= 0:
            return 0.0
        ceiling = min(self.cap, self.base * 2.0 ** min(failures - 1, 32))
        return ceiling * (0.5 + 0.5 * draw)
