"""A node whose lease does not hold sends no RTP (issue #12, docs/cluster.md): the media thread asks the
fence before each send, and starts again once the lease is renewed."""

from __future__ import annotations

import asyncio

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
