"""DTMF out: a digit received from one leg is re-sent (RFC 4733) to the legs that hear it."""

from __future__ import annotations

import asyncio
import itertools

from media_peer import RtpPeer, join, peers, until

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media.dtmf import TelephoneEvent, dtmf_packets
from bridgeline.media.g711 import PCMU

EVENT_PT = 101


def events_received(peer: RtpPeer) -> list[tuple[int, int, bool, TelephoneEvent]]:
    """(sequence, timestamp, marker, event) of the telephone-event packets the peer got."""
    return [
        (r.packet.sequence, r.packet.timestamp, r.packet.marker, TelephoneEvent.parse(r.packet.payload))
        for r in peer.received
        if r.packet.payload_type == EVENT_PT
    ]


def send_digit(sender: RtpPeer, digit: str, port: int) -> None:
    packets = dtmf_packets(
        digit, ssrc=sender.ssrc, sequence=sender.seq, timestamp=77_000, payload_type=EVENT_PT
    )
    for _, packet in packets:
        sender.send_packet(packet, ("127.0.0.1", port))
    sender.seq += len(packets)


async def test_a_digit_reaches_the_listeners_and_not_a_held_member(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (None, PCMU), (None, PCMU)) as (a, b, held):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b)
        await join(engine, "held", held)
        engine.set_routes(
            "c1",
            [
                LegAudio("a", ("b",), None),
                LegAudio("b", ("a",), None),
                LegAudio("held", (), Music.CUSTOMER_HOLD),
            ],
            MusicSources(),
        )
        await asyncio.sleep(0.2)
        send_digit(a, "7", port_a)

        assert await until(lambda: any(e.end for *_, e in events_received(b)), within=3.0)
        await asyncio.sleep(0.2)  # the end packet is repeated on the following ticks
        got = events_received(b)
        assert {e.event for *_, e in got} == {7}  # '7' is event code 7
        assert len({ts for _, ts, _, _ in got}) == 1  # one event: one start timestamp throughout
        assert got[0][2] and not any(marker for _, _, marker, _ in got[1:])  # marker on the first only
        durations = [e.duration for *_, e in got]
        assert durations == sorted(durations) and durations[-1] == 800  # 100 ms at 8 kHz
        assert sum(e.end for *_, e in got) == 3
        seqs = [seq for seq, *_ in got]
        assert all((b2 - b1) & 0xFFFF == 1 for b1, b2 in itertools.pairwise(seqs))
        assert events_received(held) == []
        assert events_received(a) == []  # never echoed back to its sender


async def test_no_relay_to_a_leg_without_telephone_event(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (None, PCMU)) as (a, b):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b, telephone_event_pt=None)
        engine.set_routes("c1", [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)], MusicSources())
        digits: list[tuple[str, str]] = []
        engine.on_dtmf(lambda leg, digit: digits.append((leg, digit)))
        await asyncio.sleep(0.1)
        send_digit(a, "#", port_a)
        assert await until(lambda: digits == [("a", "#")])
        await asyncio.sleep(0.3)
        assert all(r.packet.payload_type == PCMU for r in b.received)
