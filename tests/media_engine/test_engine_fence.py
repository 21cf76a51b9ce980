"""A node whose lease does not hold sends no RTP (issue #12, docs/cluster.md): the media thread asks the
fence before each send, and starts again once the lease is renewed."""

from __future__ import annotations

import asyncio
import threading

from media_peer import join, peers

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media import g711


async def test_no_rtp_leaves_while_fenced_and_it_resumes_after(engine: MediaEngine) -> None:
    fenced = [False]
    engine.fence(lambda: fenced[0])
    async with peers((None, g711.PCMU)) as (a,):
        join(engine, "a", a)
        engine.set_routes("c1", [LegAudio("a", (), Music.WAIT)], MusicSources())
        await a.listen(5)  # music flows
        fenced[0] = True
        await asyncio.sleep(0.1)  # a packet already on its way may still land
        loop = asyncio.get_running_loop()
        mark = loop.time()
        await asyncio.sleep(0.3)  # 15 ticks
        assert a.count_since(mark) == 0
        assert engine.stats["send_fenced"] >= 10
        fenced[0] = False
        await a.listen(5)  # renewed: the same leg is heard again


async def test_a_leg_closed_while_its_tick_is_on_the_way_gets_none_of_it(engine: MediaEngine) -> None:
    """A node that lost its lease releases its legs, then registers again (unfenced) at once: a tick the
    media thread mixed before it applied the close must not reach the released leg after all."""
    armed, reached, go = threading.Event(), threading.Event(), threading.Event()

    def fence() -> bool:  # asked by the media thread between mixing a tick and sending it
        if armed.is_set():
            armed.clear()
            reached.set()
            go.wait(5)  # hold the mixed tick until the leg is closed
        return False

    engine.fence(fence)
    async with peers((None, g711.PCMU)) as (a,):
        join(engine, "a", a)
        engine.set_routes("c1", [LegAudio("a", (), Music.WAIT)], MusicSources())
        await a.listen(5)  # music flows
        armed.set()
        assert await asyncio.to_thread(reached.wait, 5)  # a tick for a is mixed, not sent yet
        mark = asyncio.get_running_loop().time()
        engine.close_leg("a")
        go.set()
        await asyncio.sleep(0.3)
        assert a.count_since(mark) == 0
