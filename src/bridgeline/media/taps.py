"""Recording taps of narrowband conferences: each tick's mix of the tapped legs' frames, written into
a block of BLOCK_TICKS ticks, and handed out as ONE chunk per recording and block.

Why a block: a frame per recording and tick cost a bytes copy, a tuple and a queue put on the tick's
thread, and a file write on the writer's; once per block (200 ms) they cost a tenth. The tap layout
(which legs, which block row) is compiled by `plan` when taps, routes or legs change, not per tick.

The timeline stays exact: row r holds its recording's frames from the block's tick `start[r]` up to
the tick being filled. A tap added mid-block starts at the current tick; one removed (or moved off
the narrowband path) hands out its partial chunk at once; `flush` hands one out early (a pause or
stop boundary), and `flush_all` every one (a shutdown). A recording's chunks come out in tick order
and hold every tick it was tapped, nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.jitter import FRAME_SAMPLES, decode_frame
from bridgeline.media.leg import Leg
from bridgeline.media.mixer import saturate

__all__ = ["BLOCK_TICKS", "TapBlock"]

BLOCK_TICKS: Final = 10  # 200 ms per chunk: a stop or pause flushes early, so it never delays one
_NARROW_PTS: Final = (g711.PCMU, g711.PCMA)


@cache
def _pair_table(payload_type: int) -> NDArray[np.int32]:
    """G.711 decoded two codes at a time: two consecutive codes read as one native uint16 index the
    two int16 samples they decode to, packed in one int32. Half the lookups (and index conversions)
    of a code-by-code decode, for a 256 KB table per codec."""
    pairs = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
    return g711.decode_table(payload_type)[pairs].view(np.int32).reshape(-1)


class TapBlock:
    """The narrowband taps' block; see the module docstring. Single-threaded, like the runtime."""

    def __init__(self) -> None:
        self._ids: list[str | None] = []  # block row -> recording id (None: removed during this block)
        self._row: dict[str, int] = {}  # recording id -> block row
        self._start: list[int] = []  # block row -> the block's first tick it holds
        # Tick by tick (a tick's frames of every row are contiguous, written at once); rows grow.
        self._block = np.zeros((BLOCK_TICKS, 0, FRAME_SAMPLES), dtype=np.int16)
        self._filled = 0  # ticks of the block written
        self._taps: list[tuple[str, list[Leg]]] = []  # the taps last planned
        # The gather plan: the tapped legs row by row, the rows that have legs and their first slot.
        self._legs: list[Leg] = []
        self._used: NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        self._starts: NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        self._per_row = 0  # > 0: every row has this many legs (one reshape and sum, no scatter)
        self._pt = g711.PCMU  # the codec most tapped legs speak: decoded in one table lookup
        self._pairs = np.zeros(0, dtype=np.int32)  # the tick's decoded frames, two samples per item
        self._decoded = self._pairs.view(np.int16).reshape(0, FRAME_SAMPLES)  # the same, a row per leg
        self._acc = np.zeros((0, FRAME_SAMPLES), dtype=np.int32)  # the rows' sums before clipping

    @property
    def active(self) -> bool:
        """Some tap records: the tick must keep each leg's frame (`leg.last_frame`)."""
        return bool(self._row)

    def plan(self, taps: Sequence[tuple[str, Sequence[Leg | None]]], out: list[tuple[str, bytes]]) -> None:
        """The narrowband taps now, (recording id, the legs it hears; None: not opened). A recording
        no longer among them hands its partial chunk to `out`; a new one starts at the next tick."""
        wanted = {recording_id for recording_id, _ in taps}
        for recording_id in [rid for rid in self._row if rid not in wanted]:
            self.flush(recording_id, out)
            self._ids[self._row.pop(recording_id)] = None
        for recording_id, _ in taps:
            if recording_id not in self._row:
                self._add_row(recording_id)
        self._taps = [(rid, [leg for leg in legs if leg is not None]) for rid, legs in taps]
        if not self._row:
            self._filled = 0  # nothing records: the next tap starts a block of its own
        if self._filled == 0:
            self._compact()
        self._compile()

    def flush(self, recording_id: str, out: list[tuple[str, bytes]]) -> None:
        """Hand the recording's frames so far to `out` now; its next chunk starts at the next tick."""
        row = self._row.get(recording_id)
        if row is not None and self._start[row] < self._filled:
            out.append((recording_id, self._block[self._start[row] : self._filled, row].tobytes()))
            self._start[row] = self._filled

    def flush_all(self, out: list[tuple[str, bytes]]) -> None:
        """Hand every recording's frames so far to `out`, and start a new block."""
        filled, block = self._filled, self._block
        for row, recording_id in enumerate(self._ids):
            start = self._start[row]
            if recording_id is not None and start < filled:
                out.append((recording_id, block[start:filled, row].tobytes()))
        self._filled = 0
        self._start = [0] * len(self._ids)
        if len(self._row) < len(self._ids):
            self._compact()
            self._compile()

    def skip(self, ticks: int, out: list[tuple[str, bytes]]) -> None:
        """Ticks the runtime skipped (it fell too far behind): silence in every recording, so a file's
        length stays the wall clock and what follows stays where it happened."""
        for _ in range(ticks if self._row else 0):
            self._block[self._filled, : len(self._ids)].fill(0)
            self._filled += 1
            if self._filled == BLOCK_TICKS:
                self.flush_all(out)

    def record(self, out: list[tuple[str, bytes]]) -> None:
        """Mix this tick's frames into the block (after a tick run with `keep_frames`); a full block
        goes to `out`, one chunk per recording."""
        column = self._block[self._filled, : len(self._ids)]
        if not self._legs:
            column.fill(0)
        else:
            decoded, k, acc = self._decode(), self._per_row, self._acc
            if k == 1:
                column[:] = decoded
            elif k == 2:  # two-party conferences: the common case
                pairs = decoded.reshape(len(column), 2, FRAME_SAMPLES)
                np.add(pairs[:, 0], pairs[:, 1], out=acc, dtype=np.int32)
                saturate(acc, column)
            elif k:
                decoded.reshape(len(column), k, FRAME_SAMPLES).sum(axis=1, dtype=np.int32, out=acc)
                saturate(acc, column)
            else:
                acc.fill(0)
                acc[self._used] = np.add.reduceat(decoded, self._starts, axis=0, dtype=np.int32)
                saturate(acc, column)
        self._filled += 1
        if self._filled == BLOCK_TICKS:
            self.flush_all(out)

    def _decode(self) -> NDArray[np.int16]:
        """The tapped legs' frames of the tick as rows of samples. When every frame is the main codec's
        codes (the common case): one lookup per two samples; otherwise frame by frame."""
        frames = [leg.last_frame for leg in self._legs]
        pt = self._pt
        # None (TypeError) or concealed samples (ValueError: an array's truth) leave the fast path, and
        # so does another codec's frame (left out: too few codes). Codes are whole 20 ms packets.
        try:
            codes = b"".join([f[1] for f in frames if f[0] == pt])  # type: ignore[index]
        except (TypeError, ValueError):
            codes = b""
        if len(codes) == 2 * self._pairs.size:
            # mode="clip": every uint16 is a row of the table, so no bounds check is needed (a third faster)
            indexes = np.frombuffer(codes, dtype=np.uint16).astype(np.intp)
            _pair_table(pt).take(indexes, out=self._pairs, mode="clip")
            return self._decoded
        decoded = self._decoded
        for slot, frame in enumerate(frames):
            if frame is None:
                decoded[slot] = 0
            elif isinstance(frame, tuple):
                decoded[slot] = decode_frame(frame) if len(frame[1]) == FRAME_SAMPLES else 0
            else:  # concealed samples (a 20 ms frame; anything else is not heard)
                decoded[slot] = frame if len(frame) == FRAME_SAMPLES else 0
        return decoded

    def _add_row(self, recording_id: str) -> None:
        row = len(self._ids)
        if row == self._block.shape[1]:  # grow, keeping what the block holds
            grown = np.zeros((BLOCK_TICKS, max(8, 2 * row), FRAME_SAMPLES), dtype=np.int16)
            grown[:, :row] = self._block
            self._block = grown
        self._ids.append(recording_id)
        self._start.append(self._filled)
        self._row[recording_id] = row

    def _compact(self) -> None:
        """Drop the rows of removed recordings (only between blocks: the others' rows move)."""
        live = [rid for rid in self._ids if rid is not None]
        self._ids = list(live)
        self._row = {rid: row for row, rid in enumerate(live)}
        self._start = [0] * len(live)

    def _compile(self) -> None:
        """The gather plan from the taps last planned and the current rows."""
        row_of = self._row
        legs: list[Leg] = []
        used: list[int] = []
        starts: list[int] = []
        sizes: set[int] = set()
        for row, tap_legs in sorted(((row_of[rid], tap_legs) for rid, tap_legs in self._taps), key=_first):
            sizes.add(len(tap_legs))
            if tap_legs:
                used.append(row)
                starts.append(len(legs))
                legs.extend(tap_legs)
        self._legs = legs
        self._used = np.asarray(used, dtype=np.intp)
        self._starts = np.asarray(starts, dtype=np.intp)
        every_row = len(used) == len(self._ids)
        self._per_row = sizes.pop() if every_row and len(sizes) == 1 else 0
        pts = [leg.payload_type for leg in legs if leg.payload_type in _NARROW_PTS]
        self._pt = max(set(pts), key=lambda pt: (pts.count(pt), -pt)) if pts else g711.PCMU
        self._pairs = np.zeros(len(legs) * FRAME_SAMPLES // 2, dtype=np.int32)
        self._decoded = self._pairs.view(np.int16).reshape(len(legs), FRAME_SAMPLES)
        self._acc = np.zeros((len(self._ids), FRAME_SAMPLES), dtype=np.int32)


def _first(pair: tuple[int, list[Leg]]) -> int:
    return pair[0]
