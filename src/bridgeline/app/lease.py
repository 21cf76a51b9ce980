"""The decisions of a cluster node, pure: whether its lease still holds locally, how many orphaned
conferences it claims, and where a drained conference goes. No I/O, no clock: `now` is passed in."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class LocalLease:
    """The node's own view of its lease, on the monotonic clock.

    A renewal sent at `sent_at` makes the database extend the lease by `lease_s` from when it runs, which
    is later; so locally the lease is held until `sent_at + lease_s - margin_s`, always before the
    database lets another node take over (the margin covers the two clocks' rates). Past it (a paused
    process, an unreachable database) the node sends no RTP and no SIP until a renewal succeeds.
    """

    lease_s: float
    margin_s: float
    valid_until: float = -math.inf

    def renewed(self, sent_at: float) -> None:
        self.valid_until = max(self.valid_until, sent_at + self.lease_s - self.margin_s)

    def lost(self) -> None:
        self.valid_until = -math.inf

    def held(self, now: float) -> bool:
        return now < self.valid_until


@dataclass(frozen=True, slots=True)
class Load:
    """A live node as placement sees it: fewer conferences first, then fewer legs, then by id."""

    node_id: str
    conferences: int
    legs: int


def claim_share(me: str, nodes: Sequence[Load], orphans: int, batch: int) -> int:
    """How many of `orphans` this node claims on this scan: the orphans are dealt one at a time to the
    least-loaded node (by conferences, then legs, then node id), as every node computes alike, and this
    node takes what it was dealt — at least one, so orphans never wait for a node that does not claim,
    and at most `batch`, so one scan stays short."""
    if orphans <= 0:
        return 0
    heap = [(node.conferences, node.legs, node.node_id) for node in nodes]
    if not any(entry[2] == me for entry in heap):
        heap.append((0, 0, me))
    heapq.heapify(heap)
    mine = 0
    for _ in range(min(orphans, batch * max(1, len(heap)))):
        conferences, legs, node_id = heapq.heappop(heap)
        if node_id == me:
            mine += 1
        heapq.heappush(heap, (conferences + 1, legs, node_id))
    return max(1, min(mine, batch))


def least_loaded(nodes: Sequence[Load]) -> Load | None:
    """Where a drained conference goes: the node with the fewest conferences, then legs, then by id."""
    return min(nodes, key=lambda node: (node.conferences, node.legs, node.node_id), default=None)
