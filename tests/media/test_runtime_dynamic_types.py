"""A codec under a dynamic payload type number (RFC 3551 3: `a=rtpmap:97 PCMA/8000`): the leg
sends that number and reads it back as its codec. Virtual clock, no sockets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from media_sim import G722, PCMA, PCMU, Sim, SimPeer, dominant_freq, level_at, rms

from bridgeline.core.effects import LegAudio
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket

DYNAMIC = 97


@dataclass(eq=False)
class DynamicPeer(SimPeer):
    """A phone that negotiated its codec as payload type 97."""

    def next_audio_packet(self) -> RtpPacket:
        packet = super().next_audio_packet()
        packet.payload_type = DYNAMIC
        return packet

    def heard(self, mark: float) -> list[RtpPacket]:
        return [p for at, p in self.received if at >= mark]


def _join_dynamic(sim: Sim, leg_id: str, peer: DynamicPeer) -> None:
    sim.peers[peer.address] = peer
    sim.runtime.open_leg(leg_id)
    sim.runtime.connect_leg(
        leg_id,
        remote=peer.address,
        payload_type=peer.payload_type,  # the codec, by its static number
        wire_payload_type=DYNAMIC,
        telephone_event_pt=101,
        send=True,
        now=sim.now,
    )
    sim.start_talking(peer, leg_id)


@pytest.mark.parametrize("codec", [PCMA, G722])
def test_a_codec_under_a_dynamic_type_is_sent_and_heard_as_that_codec(codec: int) -> None:
    sim = Sim()
    dynamic, plain = DynamicPeer(440, codec), sim.peer(1000, PCMU)
    _join_dynamic(sim, "dyn", dynamic)
    sim.join("plain", plain)
    sim.runtime.set_routes("c1", [LegAudio("dyn", ("plain",), None), LegAudio("plain", ("dyn",), None)], {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    sent = dynamic.heard(mark)
    assert sent and {p.payload_type for p in sent} == {DYNAMIC}  # the number the SDP gave it
    for _, packet in dynamic.received:
        packet.payload_type = codec  # decode what it got as its codec
    assert dominant_freq(dynamic.pcm_since(mark), dynamic.rate) == pytest.approx(1000, abs=8)
    assert dominant_freq(plain.pcm_since(mark)) == pytest.approx(440, abs=4)  # read back as its codec


@dataclass(eq=False)
class RemappedPeer(SimPeer):
    """A phone whose SDP said `0 PCMA/8000`: A-law audio under PCMU's static number."""

    def next_audio_packet(self) -> RtpPacket:
        packet = super().next_audio_packet()
        packet.payload_type = PCMU
        return packet


def test_a_static_number_given_to_another_codec_is_read_as_that_codec() -> None:
    """Once latched, packets take the receive fast lane: it must not decode A-law as u-law because
    the number on the wire is PCMU's."""
    sim = Sim()
    remapped, plain = RemappedPeer(440, PCMA), sim.peer(1000, PCMU)
    sim.peers[remapped.address] = remapped
    sim.runtime.open_leg("remapped")
    sim.runtime.connect_leg(
        "remapped",
        remote=remapped.address,
        payload_type=PCMA,
        wire_payload_type=PCMU,
        telephone_event_pt=101,
        send=True,
        now=sim.now,
    )
    sim.start_talking(remapped, "remapped")
    sim.join("plain", plain)
    routes = [LegAudio("remapped", ("plain",), None), LegAudio("plain", ("remapped",), None)]
    sim.runtime.set_routes("c1", routes, {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    heard = plain.pcm_since(mark)
    assert dominant_freq(heard) == pytest.approx(440, abs=4)
    # A-law read as u-law keeps the pitch but not the waveform: 3.5x the level, strong harmonics.
    tone = ToneSource(440)
    assert rms(heard) == pytest.approx(rms(np.concatenate([tone.next_frame() for _ in range(25)])), rel=0.1)
    assert level_at(heard, 1320) < 0.02
    assert {p.payload_type for p in remapped.packets} == {PCMU}  # sent under the SDP's number


def test_the_static_number_of_another_codec_is_not_read_as_the_dynamic_one() -> None:
    """A G.722 leg negotiated as 97 ignores packets of type 0: not its codec, not evidence."""
    sim = Sim()
    dynamic = DynamicPeer(440, G722)
    _join_dynamic(sim, "dyn", dynamic)
    sim.stop_talking(dynamic)
    stray = SimPeer(440, PCMU, address=dynamic.address)
    before = sim.runtime.counters.ignored_in
    for _ in range(5):
        sim.send("dyn", stray.next_audio_packet().serialize(), dynamic.address)
    assert sim.runtime.counters.ignored_in == before + 5
