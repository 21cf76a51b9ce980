"""`KeyedDeadlines`: one deadline per key (e.g. a leg's PRACK retransmission, its session refresh).

A heap with lazy deletion, like `LegDeadlines`: `arm` pushes an entry and records the key's
current deadline; an entry whose deadline moved or was cancelled is dropped when it reaches the
top. `get_timer` is asked after every datagram: O(log n) per change, O(1) to peek.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

_COMPACT_MIN = 64  # below this many entries, stale ones are not worth a rebuild


class KeyedDeadlines(Generic[K]):
    def __init__(self) -> None:
        self._current: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._tie = itertools.count()

    def arm(self, key: K, deadline: float | None) -> None:
        """Set (or with None, cancel) the key's deadline."""
        if deadline is None:
            self._current.pop(key, None)
            return
        self._current[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._tie), key))
        if len(self._heap) > max(_COMPACT_MIN, 2 * len(self._current)):
            self._heap = [entry for entry in self._heap if self._current.get(entry[2]) == entry[0]]
            heapq.heapify(self._heap)

    def deadline(self, key: K) -> float | None:
        return self._current.get(key)

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, key = heap[0]
            if self._current.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> K | None:
        """The key whose deadline passed first, now disarmed; None when none is due."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if self._current.get(key) == deadline:
                del self._current[key]
                return key
        return None

    def __len__(self) -> int:
        """Keys with a deadline (stale heap entries are not counted)."""
        return len(self._current)
