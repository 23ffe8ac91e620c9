"""The mock clock: real time plus an offset that tests can move forward (or back).

All protocol time (poll `ts` window, token `iat`, poll log, sessions, the `Date`
header) comes from here, so a test can age things without sleeping.  TLS certificate
validity deliberately does *not* use it: clients check certificates with their own
real clock.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass


@dataclass
class MockClock:
    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock by `seconds` and return the new time."""
        if not math.isfinite(seconds):
            raise ValueError("clock advance must be a finite number of seconds")
        self.offset += seconds
        return self.now()

    def http_date(self) -> str:
        """The `Date` header value: devices without a real-time clock take `ts` from it."""
        return email.utils.formatdate(self.now(), usegmt=True)
