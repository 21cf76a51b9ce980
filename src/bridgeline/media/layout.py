"""The tick layout: the conferences and legs flattened into the lists one 20 ms tick walks, kept up
to date one conference at a time.

Built from scratch after every routing change, the layout cost O(every leg) per change, so call
setups got slower the more calls were up (a sixth of the held-calls benchmark's samples). Instead
`TickLayout` is patched: `place` (re)compiles one conference's part and `remove` takes it out, both
O(that conference); `sync_leg` keeps one leg's place among the legs in no conference. Plain
conferences are mixed in batches by size; a change marks its size's batch stale and `refresh` (at
the next tick) rebuilds only the stale batches, O(the conferences of that size), at most once a tick.

`build_layout` builds the same layout from scratch, in the old way; it is the reference the tests
hold the patched layout to (the lists' order may differ, not what they hold).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final, Literal

from bridgeline.media import g711
from bridgeline.media.batch_mix import MixMinusBatch
from bridgeline.media.leg import Leg
from bridgeline.media.player import SharedSource
from bridgeline.media.routes import ConferenceMix

__all__ = ["Batch", "TickLayout", "build_layout"]

# Free slots in `pulled` cost the tick a check each; past this many, and past half the list, the
# direct conferences are laid out again (amortised O(1) per removed leg).
COMPACT_MIN_FREE: Final = 64


class Batch:
    """Plain conferences of one size, mixed together; rows follow the conferences' leg order."""

    def __init__(self, confs: list[ConferenceMix], legs: Mapping[str, Leg]) -> None:
        self.legs = [legs.get(la.leg_id) for conf in confs for la in conf.legs]
        self.mixer = MixMinusBatch(len(confs), len(confs[0].legs))
        pts = Counter(leg.payload_type for leg in self.legs if leg is not None)
        self.pts = sorted(pts)  # the listeners' codecs: the whole mix is encoded once per codec
        # The codec most rows arrive in: their codes are decoded in one lookup, the rest row by row
        # (a tie goes to the lower payload type, whatever the rows' order).
        self.pt = min(pts, key=lambda pt: (-pts[pt], pt)) if pts else g711.PCMU


class _Placement:
    """Where one conference sits in the layout, as compiled when placed (the conference itself may
    since have been configured again, pending its next `place`): its slots in `pulled` and its
    entries in `direct` (a direct conference), or its batch size (a plain one)."""

    __slots__ = ("conf", "entries", "kind", "size", "slots")

    def __init__(self, conf: ConferenceMix) -> None:
        self.conf = conf
        self.kind: Literal["direct", "plain", "mixed"] = (
            "direct" if conf.direct is not None else "plain" if conf.plain else "mixed"
        )
        self.slots: list[int] = []
        self.entries: list[int] = []  # positions in TickLayout.direct
        self.size = 0  # a plain conference's size, else 0


class TickLayout:
    """What the tick walks, so that its loops touch legs directly instead of looking them up by id.

    `legs` and `member_of` (leg id -> conference id) are the runtime's own tables, read when a
    conference is placed or a leg synced; the runtime calls `place`/`remove`/`sync_leg` after
    changing them, and `refresh` before each tick."""

    def __init__(self, legs: Mapping[str, Leg], member_of: Mapping[str, str]) -> None:
        self._legs, self._member_of = legs, member_of
        self.pulled: list[Leg | None] = []  # every leg of a direct conference, pulled each tick
        # Per listener of a direct conference: what it hears (an index into pulled, music, or None).
        self.direct: list[tuple[Leg, int | SharedSource | None]] = []
        self.batches: list[Batch] = []
        self.mixed: dict[str, ConferenceMix] = {}  # conferences with their own mixer
        self.loose: dict[str, Leg] = {}  # legs in no conference
        self.compact_min_free = COMPACT_MIN_FREE
        self._placed: dict[str, _Placement] = {}  # conference id -> its placement
        self._entry_owner: list[tuple[_Placement, int]] = []  # per direct entry: whose, which of its
        self._free: list[int] = []  # slots of pulled that hold None and no leg's place
        self._plain: dict[int, dict[str, ConferenceMix]] = {}  # size -> plain conferences by id
        self._batch_of: dict[int, Batch] = {}  # size -> its batch
        self._stale: set[int] = set()  # sizes whose batch must be rebuilt

    # ------------------------------------------------------------------ changes
    def place(self, conf: ConferenceMix) -> None:
        """Lay out the conference as last configured (replacing its previous place)."""
        self.remove(conf.id)
        placement = self._placed[conf.id] = _Placement(conf)
        if placement.kind == "direct":
            self._place_direct(placement)
        elif placement.kind == "plain":
            placement.size = len(conf.legs)
            self._plain.setdefault(placement.size, {})[conf.id] = conf
            self._stale.add(placement.size)
        else:
            self.mixed[conf.id] = conf

    def remove(self, conference_id: str) -> None:
        """Take the conference out of the layout (nothing if it is not in it)."""
        placement = self._placed.pop(conference_id, None)
        if placement is None:
            return
        if placement.kind == "plain":
            same_size = self._plain[placement.size]
            del same_size[conference_id]
            if not same_size:
                del self._plain[placement.size]
            self._stale.add(placement.size)
        elif placement.kind == "mixed":
            del self.mixed[conference_id]
        else:
            self._unplace_direct(placement)
            if len(self._free) >= self.compact_min_free and 2 * len(self._free) > len(self.pulled):
                self._compact()

    def sync_leg(self, leg_id: str) -> None:
        """The leg was opened, closed, or joined or left a conference: it is loose if it is open and
        in none."""
        leg = self._legs.get(leg_id)
        if leg is not None and leg_id not in self._member_of:
            self.loose[leg_id] = leg
        else:
            self.loose.pop(leg_id, None)

    def refresh(self) -> None:
        """Rebuild the batches whose conferences changed (before a tick)."""
        if not self._stale:
            return
        for size in self._stale:
            same_size = self._plain.get(size)
            if same_size:
                self._batch_of[size] = Batch(list(same_size.values()), self._legs)
            else:
                self._batch_of.pop(size, None)
        self._stale.clear()
        self.batches = list(self._batch_of.values())

    # ------------------------------------------------------------------ direct conferences
    def _place_direct(self, placement: _Placement) -> None:
        conf, legs = placement.conf, self._legs
        assert conf.direct is not None
        index: dict[str, int] = {}
        for leg_id, _ in conf.leg_rows:  # every leg is pulled each tick, heard or not
            slot = self._free.pop() if self._free else len(self.pulled)
            if slot == len(self.pulled):
                self.pulled.append(None)
            self.pulled[slot] = legs.get(leg_id)
            index[leg_id] = slot
            placement.slots.append(slot)
        for leg_id, source in conf.direct:
            leg = legs.get(leg_id)
            if leg is not None:
                placement.entries.append(len(self.direct))
                self._entry_owner.append((placement, len(placement.entries) - 1))
                self.direct.append((leg, index[source] if isinstance(source, str) else source))

    def _unplace_direct(self, placement: _Placement) -> None:
        for slot in placement.slots:
            self.pulled[slot] = None
            self._free.append(slot)
        direct, owners = self.direct, self._entry_owner
        # Highest position first, each filled with the last entry: the last is never one of ours
        # still to remove, so every other placement's positions stay right once updated.
        for position in sorted(placement.entries, reverse=True):
            last = len(direct) - 1
            if position != last:
                direct[position] = direct[last]
                owner, k = owners[position] = owners[last]
                owner.entries[k] = position
            direct.pop()
            owners.pop()
        placement.slots, placement.entries = [], []

    def _compact(self) -> None:
        """Lay out the direct conferences again, without free slots."""
        placements = [p for p in self._placed.values() if p.kind == "direct"]
        self.pulled, self.direct, self._entry_owner, self._free = [], [], [], []
        for placement in placements:
            placement.slots, placement.entries = [], []
            self._place_direct(placement)


def build_layout(
    confs: Iterable[ConferenceMix], legs: dict[str, Leg], member_of: dict[str, str]
) -> TickLayout:
    """The layout of the conferences and legs (member_of: leg id -> conference id), from scratch."""
    layout = TickLayout(legs, member_of)
    plain: dict[int, list[ConferenceMix]] = {}  # by size
    for conf in confs:
        if conf.direct is not None:
            index: dict[str, int] = {}
            for leg_id, _ in conf.leg_rows:
                index[leg_id] = len(layout.pulled)
                layout.pulled.append(legs.get(leg_id))
            for leg_id, source in conf.direct:
                leg = legs.get(leg_id)
                if leg is not None:
                    layout.direct.append((leg, index[source] if isinstance(source, str) else source))
        elif conf.plain:
            plain.setdefault(len(conf.legs), []).append(conf)
        else:
            layout.mixed[conf.id] = conf
    layout.batches = [Batch(same_size, legs) for same_size in plain.values()]
    layout.loose = {leg_id: leg for leg_id, leg in legs.items() if leg_id not in member_of}
    return layout
