"""The runtime's incremental bookkeeping, after any sequence of leg and routing changes: the tick
layout, patched one conference at a time, holds what one built from scratch holds; the music it
keeps is the music its conferences play; and a runtime whose layout is rebuilt before every tick
sends the same packets. (The private tables are read on purpose: they are what is under test.)"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.layout import TickLayout, build_layout
from bridgeline.media.leg import Leg
from bridgeline.media.player import AudioSource, SharedSource, ToneSource
from bridgeline.media.runtime import MediaRuntime, UnknownLeg

LEGS = [f"l{i}" for i in range(9)]
CONFS = ["c0", "c1", "c2"]
TONES = (350, 440, 620)  # the pool's sources: three tones, and one SharedSource given as it is

leg_ids = st.sampled_from(LEGS)
members = st.lists(
    st.tuples(leg_ids, st.sets(leg_ids, max_size=4), st.none() | st.sampled_from(list(Music))),
    max_size=5,
)
music = st.dictionaries(st.sampled_from(list(Music)), st.integers(0, len(TONES)))
changes = st.one_of(
    st.tuples(st.just("open"), leg_ids),
    st.tuples(st.just("join"), leg_ids, st.sampled_from([0, 8])),  # open, connect, sending
    st.tuples(st.just("connect"), leg_ids, st.sampled_from([0, 8]), st.booleans()),
    st.tuples(st.just("close"), leg_ids),
    st.tuples(st.just("tick")),
    st.tuples(st.just("routes"), st.sampled_from(CONFS), members, music),
    # everyone hears everyone else: a plain conference, mixed in a batch with those of its size
    st.tuples(
        st.just("plain"), st.sampled_from(CONFS), st.lists(leg_ids, min_size=3, max_size=4, unique=True)
    ),
)
operations = st.lists(changes, max_size=40)


def _ident(leg: Leg | None) -> tuple[str, int]:
    return ("", 0) if leg is None else (leg.leg_id, id(leg))


def canonical(layout: TickLayout) -> dict[str, Any]:
    """What the layout holds, in an order that does not depend on the order of changes."""
    layout.refresh()
    pulled = layout.pulled

    def heard(source: int | SharedSource | None) -> tuple[str, int]:
        if source is None:
            return ("silence", 0)
        if isinstance(source, int):
            return _ident(pulled[source])
        return ("music", id(source))

    batches = []
    for batch in layout.batches:
        size = batch.mixer.members
        rows = [_ident(leg) for leg in batch.legs]
        blocks = sorted(tuple(rows[k : k + size]) for k in range(0, len(rows), size))
        batches.append((batch.mixer.conferences, size, blocks, batch.pts, batch.pt))
    return {
        "pulled": sorted(_ident(leg) for leg in pulled if leg is not None),
        "direct": sorted((_ident(leg), heard(source)) for leg, source in layout.direct),
        "batches": sorted(batches),
        "mixed": sorted((cid, id(conf)) for cid, conf in layout.mixed.items()),
        "loose": sorted((leg_id, id(leg)) for leg_id, leg in layout.loose.items()),
    }


def apply(runtime: MediaRuntime, op: tuple[Any, ...], pool: list[AudioSource | SharedSource]) -> None:
    kind = op[0]
    if kind == "open":
        runtime.open_leg(op[1])
    elif kind == "join":
        runtime.open_leg(op[1])
        apply(runtime, ("connect", op[1], op[2], True), pool)
    elif kind == "close":
        runtime.close_leg(op[1])
    elif kind == "connect":
        with contextlib.suppress(UnknownLeg):  # not opened (or closed): refused
            runtime.connect_leg(
                op[1],
                remote=("127.0.0.1", 40000 + LEGS.index(op[1])),
                payload_type=op[2],
                telephone_event_pt=101,
                send=op[3],
                now=runtime.next_tick_at,
            )
    elif kind == "tick":
        runtime.tick(runtime.next_tick_at)
    elif kind == "plain":
        _, cid, legs = op
        runtime.set_routes(cid, [LegAudio(leg, tuple(legs), None) for leg in legs], {})
    else:
        _, cid, legs, music = op
        routes = [LegAudio(leg, tuple(sorted(hears)), heard) for leg, hears, heard in legs]
        runtime.set_routes(cid, routes, {kind: pool[i] for kind, i in music.items()})


def make_pool() -> list[AudioSource | SharedSource]:
    return [*(ToneSource(freq) for freq in TONES), SharedSource(ToneSource(880))]


def check_music(runtime: MediaRuntime, after_routes: bool) -> None:
    confs = runtime._confs.values()
    playing = Counter(key for conf in confs for key in {id(s) for s in conf.music.values()})
    assert runtime._music_users == dict(playing)
    kept = {id(shared) for _, shared in runtime._shared.values()}
    assert runtime._wrapped == {id(shared): key for key, (_, shared) in runtime._shared.items()}
    assert all(key == id(source) for key, (source, _) in runtime._shared.items())
    if after_routes:  # the music nobody plays is forgotten at the end of each set_routes
        assert {key for key in playing if key in runtime._wrapped} == kept


@settings(max_examples=400, deadline=None)
@given(operations, st.sampled_from([1, 2, 64]))
def test_patched_layout_and_kept_music_match_a_fresh_count(ops: list[tuple[Any, ...]], compact: int) -> None:
    runtime = MediaRuntime(rng=random.Random(1))
    runtime._layout.compact_min_free = compact  # small: the compaction path runs too
    pool = make_pool()
    for op in ops:
        apply(runtime, op, pool)
        fresh = build_layout(runtime._confs.values(), runtime._legs, runtime._member_of)
        assert canonical(runtime._layout) == canonical(fresh), op
        check_music(runtime, after_routes=op[0] in ("routes", "plain"))
        # Every member is a key of the conference tables, and the layout places exactly those.
        assert set(runtime._member_of.values()) == set(runtime._confs)
        assert set(runtime._layout._placed) == set(runtime._confs)


@settings(max_examples=150, deadline=None)
@given(st.lists(changes, min_size=15, max_size=50))
def test_the_packets_are_those_of_a_layout_built_from_scratch_each_tick(ops: list[tuple[Any, ...]]) -> None:
    patched, rebuilt = MediaRuntime(rng=random.Random(7)), MediaRuntime(rng=random.Random(7))
    pools = make_pool(), make_pool()
    for op in [*ops, ("tick",)]:
        if op[0] == "tick":
            own, now = rebuilt._layout, patched.next_tick_at
            rebuilt._layout = build_layout(rebuilt._confs.values(), rebuilt._legs, rebuilt._member_of)
            assert sorted(patched.tick(now)) == sorted(rebuilt.tick(now))
            rebuilt._layout = own  # patched as ever by the changes, never ticked
        else:
            apply(patched, op, pools[0])
            apply(rebuilt, op, pools[1])
