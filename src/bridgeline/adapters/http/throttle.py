"""Token buckets per key (a client's address), bounded in number; pure: the caller passes the time."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 10_000  # buckets kept; the least recently touched is forgotten first


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class Throttle:
    """Each key may spend `burst` tokens at once and earns `rate` back per second.

    A forgotten key starts again with a full bucket: the bound on keys trades a little precision
    under a flood of addresses for memory that cannot grow without end.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def wait_time(self, key: str, now: float) -> float:
        """Seconds until `key` has a token to spend; 0 if it has one now."""
        bucket = self._refilled(key, now)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def spend(self, key: str, now: float) -> None:
        bucket = self._refilled(key, now)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        bucket.tokens = max(bucket.tokens - 1, 0.0)

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets.move_to_end(key)
        if bucket.tokens >= self.burst:  # full again: nothing to remember
            del self._buckets[key]
            return None
        return bucket


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
