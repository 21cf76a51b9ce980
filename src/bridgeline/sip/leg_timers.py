"""`LegDeadlines`: when each call leg next needs attention (ring timeout, CANCEL give-up).

A heap with lazy deletion, like the transaction layer's: `arm` pushes an entry, and an entry
whose leg is gone or whose deadline moved is dropped when it reaches the top. `get_timer` is
asked after every datagram, so it must not scan the legs: O(log n) per change, O(1) to peek.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping

from .call_leg import CallLeg

_COMPACT_MIN = 64  # below this many entries, stale ones are not worth a rebuild


class LegDeadlines:
    def __init__(self, legs: Mapping[str, CallLeg]) -> None:
        self._legs = legs  # the endpoint's live legs: an entry for a leg not in it is stale
        self._heap: list[tuple[float, int, CallLeg]] = []
        self._tie = itertools.count()

    def arm(self, leg: CallLeg, deadline: float | None) -> None:
        """Set (or with None, cancel) the leg's deadline."""
        leg.deadline = deadline
        if deadline is None:
            return
        heapq.heappush(self._heap, (deadline, next(self._tie), leg))
        if len(self._heap) > max(_COMPACT_MIN, 2 * len(self._legs)):
            self._heap = [entry for entry in self._heap if self._current(entry[0], entry[2])]
            heapq.heapify(self._heap)

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, leg = heap[0]
            if self._current(deadline, leg):
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> CallLeg | None:
        """The leg whose deadline passed first, taken off the heap; None when none is due. One
        at a time: acting on a leg may end or re-arm another, and an error loses only one entry."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, leg = heapq.heappop(heap)
            if self._current(deadline, leg):
                leg.deadline = None  # a second entry for the same deadline is now stale
                return leg
        return None

    def __len__(self) -> int:
        """Heap entries, stale ones included (bounded by compaction)."""
        return len(self._heap)

    def _current(self, deadline: float, leg: CallLeg) -> bool:
        return leg.deadline == deadline and self._legs.get(leg.leg_id) is leg
