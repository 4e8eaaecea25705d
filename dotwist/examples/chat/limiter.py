"""``RateLimiter``: one object per client address, asked by the rooms before each message.

A token bucket in memory: a client may send ``RATE_LIMIT_BURST`` messages at once, then one per
``RATE_LIMIT_INTERVAL`` seconds. Nothing is stored: an idle limiter leaves memory after 70 s
(dotwist's eviction), and by then its bucket has refilled anyway with the default settings (a
full refill takes burst x interval = 5 s), so forgetting it changes nothing a client can see.
"""

from __future__ import annotations

import math
from typing import Any

from dotwist import DurableObject

from .protocol import Settings, nowMs


class RateLimiter(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        settings = Settings.fromEnv(env)
        self.burst = settings.rateLimitBurst
        self.interval = settings.rateLimitInterval * 1000
        self.tokens = self.burst
        self.updated = nowMs(env)

    def take(self) -> int:
        """Spend one message: 0 if it may be sent now, else the milliseconds until one may.

        A refused message costs nothing, so a client that waits the time it was told can send.
        """
        now = nowMs(self.env)
        self.tokens = min(self.burst, self.tokens + (now - self.updated) / self.interval)
        self.updated = now
        if self.tokens >= 1 - 1e-9:  # float sums of exact waits land a hair under 1
            self.tokens -= 1
            return 0
        return max(1, math.ceil((1 - self.tokens) * self.interval))
