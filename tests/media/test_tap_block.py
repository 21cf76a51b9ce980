"""TapBlock (media/taps.py): the narrowband taps' frames gathered in blocks and handed out as chunks.

Held to a plain model: each tick, each tap's frame is the clipped sum of its legs' decoded frames; the
chunks a recording gets, joined, must be exactly its frames of the ticks it was tapped, in order,
whatever taps come, go, move or flush between ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.media import g711
from bridgeline.media.jitter import FRAME_SAMPLES, Frame
from bridgeline.media.leg import Leg
from bridgeline.media.taps import BLOCK_TICKS, TapBlock

LEGS = 5
RECORDINGS = ("r0", "r1", "r2")


@dataclass
class FakeLeg:
    """What a tap reads of a leg: its frame of the tick and its codec."""

    last_frame: Frame | None = None
    payload_type: int = g711.PCMU


def frame_for(kind: int, seed: int) -> Frame | None:
    """One of the frames a tick can keep: none, PCMU or PCMA codes, or concealed samples."""
    rng = np.random.default_rng(seed)
    if kind == 0:
        return None
    if kind == 3:
        return rng.integers(-20000, 20000, FRAME_SAMPLES).astype(np.int16)
    pt = g711.PCMU if kind == 1 else g711.PCMA
    return (pt, rng.integers(0, 256, FRAME_SAMPLES, dtype=np.uint8).tobytes())


def samples(frame: Frame | None) -> np.ndarray:
    if frame is None:
        return np.zeros(FRAME_SAMPLES, np.int32)
    if isinstance(frame, tuple):
        return g711.decode(frame[0], frame[1]).astype(np.int32)
    return frame.astype(np.int32)


def mixed(legs: list[FakeLeg]) -> bytes:
    total = sum((samples(leg.last_frame) for leg in legs), np.zeros(FRAME_SAMPLES, np.int32))
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


def as_legs(fakes: list[FakeLeg]) -> list[Leg | None]:
    return cast(list[Any], fakes)


class Model:
    """The block under test beside what each recording must get."""

    def __init__(self, mostly: int) -> None:
        self.block = TapBlock()
        self.legs = [FakeLeg(payload_type=mostly) for _ in range(LEGS)]
        self.taps: dict[str, list[int]] = {}
        self.expected: dict[str, list[bytes]] = {rid: [] for rid in RECORDINGS}
        self.got: list[tuple[str, bytes]] = []

    def plan(self) -> None:
        taps = [(rid, as_legs([self.legs[i] for i in leg_ids])) for rid, leg_ids in self.taps.items()]
        self.block.plan(taps, self.got)

    def tick(self, kinds: list[int], seed: int) -> None:
        for i, leg in enumerate(self.legs):
            leg.last_frame = frame_for(kinds[i], seed * LEGS + i)
        for rid, leg_ids in self.taps.items():
            self.expected[rid].append(mixed([self.legs[i] for i in leg_ids]))
        if self.block.active:
            self.block.record(self.got)

    def joined(self, rid: str) -> bytes:
        return b"".join(pcm for r, pcm in self.got if r == rid)


operation = st.one_of(
    st.tuples(
        st.just("tick"), st.lists(st.integers(0, 3), min_size=LEGS, max_size=LEGS), st.integers(0, 999)
    ),
    st.tuples(st.just("tap"), st.sampled_from(RECORDINGS), st.lists(st.integers(0, LEGS - 1), max_size=4)),
    st.tuples(st.just("untap"), st.sampled_from(RECORDINGS), st.none()),
    st.tuples(st.just("flush"), st.sampled_from(RECORDINGS), st.none()),
    st.tuples(st.just("flush_all"), st.none(), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=60), st.sampled_from([g711.PCMU, g711.PCMA]))
def test_every_recording_gets_exactly_its_ticks_frames_in_order(ops: list[Any], mostly: int) -> None:
    model = Model(mostly)
    for op, a, b in ops:
        if op == "tick":
            model.tick(a, b)
        elif op == "tap":  # a new tap, or one moved to other legs (a leg may be heard twice: summed)
            model.taps[a] = b
            model.plan()
        elif op == "untap":
            model.taps.pop(a, None)
            model.plan()
        elif op == "flush":
            model.block.flush(a, model.got)
        else:
            model.block.flush_all(model.got)
    model.block.flush_all(model.got)
    for rid in RECORDINGS:
        assert model.joined(rid) == b"".join(model.expected[rid])
    assert all(len(pcm) <= BLOCK_TICKS * 2 * FRAME_SAMPLES and pcm for _, pcm in model.got)


def test_a_steady_tap_gets_one_chunk_per_block() -> None:
    model = Model(g711.PCMU)
    model.taps = {"r0": [0, 1], "r1": [2]}
    model.plan()
    for t in range(3 * BLOCK_TICKS + 4):
        model.tick([1] * LEGS, t)
    assert [(rid, len(pcm) // (2 * FRAME_SAMPLES)) for rid, pcm in model.got] == [
        ("r0", BLOCK_TICKS),
        ("r1", BLOCK_TICKS),
    ] * 3  # the 4 ticks of the next block wait for it, or for a flush
    model.block.flush_all(model.got)
    assert [len(pcm) // (2 * FRAME_SAMPLES) for _, pcm in model.got[-2:]] == [4, 4]


def test_a_tap_removed_mid_block_hands_out_its_partial_chunk_at_once() -> None:
    model = Model(g711.PCMU)
    model.taps = {"r0": [0], "r1": [1]}
    model.plan()
    for t in range(BLOCK_TICKS + 3):
        model.tick([1] * LEGS, t)
    del model.taps["r1"]
    model.plan()
    assert model.got[-1][0] == "r1" and len(model.got[-1][1]) == 3 * 2 * FRAME_SAMPLES
    assert model.joined("r1") == b"".join(model.expected["r1"])
    for t in range(BLOCK_TICKS):  # r0 goes on; its row keeps its place until the block ends
        model.tick([2] * LEGS, 100 + t)
    model.block.flush_all(model.got)
    assert model.joined("r0") == b"".join(model.expected["r0"])


def test_a_flush_splits_the_chunk_at_the_tick_it_was_asked() -> None:
    model = Model(g711.PCMU)
    model.taps = {"r0": [0, 1]}
    model.plan()
    for t in range(4):
        model.tick([1] * LEGS, t)
    model.block.flush("r0", model.got)
    model.block.flush("r0", model.got)  # nothing new: no empty chunk
    for t in range(BLOCK_TICKS):
        model.tick([1] * LEGS, 10 + t)
    assert [len(pcm) // (2 * FRAME_SAMPLES) for _, pcm in model.got] == [4, BLOCK_TICKS - 4]


def test_without_taps_the_block_is_idle() -> None:
    block = TapBlock()
    assert not block.active
    out: list[tuple[str, bytes]] = []
    block.plan([("r0", [None])], out)  # a tap of a leg not opened yet records silence
    assert block.active
    block.record(out)
    block.plan([], out)
    assert not block.active and out == [("r0", bytes(2 * FRAME_SAMPLES))]


def test_two_party_taps_sum_both_legs_and_clip() -> None:
    model = Model(g711.PCMU)
    model.taps = {"r0": [0, 1], "r1": [2, 3], "r2": [4, 0]}  # every tap hears two legs
    model.plan()
    for t in range(BLOCK_TICKS + 3):
        model.tick([1] * LEGS, t)
    model.block.flush_all(model.got)
    for rid in RECORDINGS:
        assert model.joined(rid) == b"".join(model.expected[rid])
    loudest = (g711.PCMU, bytes([0x80]) * FRAME_SAMPLES)  # +32124 each: the sum clips
    for leg in model.legs:
        leg.last_frame = loudest
    model.block.record(model.got)
    model.block.flush_all(model.got)
    assert set(np.frombuffer(model.got[-1][1], "<i2")) == {32767}
