"""The shell's count of who hears which music spec, kept per routing change instead of collected
over every conference: after any sequence of set_routes (moves between conferences included), it
equals a fresh count, and the music library keeps exactly the specs somebody hears. No sockets:
the engine is not started, so its commands run inline, and no leg is opened (set_routes accepts
legs that are not)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.adapters.carriers.sip.music import SILENCE, spec_for
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music

LEGS = [f"l{i}" for i in range(6)]
SPECS = [None, "tone:500", "tone:600", "tone:350+440"]  # None: the kind's default

routing = st.tuples(
    st.sampled_from(["c0", "c1", "c2"]),
    st.lists(st.tuples(st.sampled_from(LEGS), st.none() | st.sampled_from(list(Music))), max_size=4),
    st.builds(
        MusicSources,
        agent_hold=st.sampled_from(SPECS),
        customer_hold=st.sampled_from(SPECS),
        wait=st.sampled_from(SPECS),
    ),
)


def heard_now(engine: MediaEngine) -> Counter[str]:
    return Counter(
        spec_for(la.music, music)
        for legs, music in engine._confs.values()
        for la in legs
        if la.music is not None
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(routing, max_size=25))
def test_music_counted_per_change_equals_a_fresh_count(changes: list[Any]) -> None:
    engine = MediaEngine()
    try:
        for cid, members, music in changes:
            engine.set_routes(cid, [LegAudio(leg, (), kind) for leg, kind in members], music)
            heard = heard_now(engine)
            assert engine._hearers == dict(heard)
            assert set(engine._library._music) == set(heard) - {SILENCE}
    finally:
        asyncio.run(engine.stop())
