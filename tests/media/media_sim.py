"""Test helpers: a MediaRuntime on a virtual clock with simulated RTP peers, and spectrum measurements.

No sockets and no waiting: `Sim.run(seconds)` advances the clock one 20 ms tick at a time; every
talking peer sends one packet per tick, the runtime ticks, and the datagrams it returns are handed to
the peer whose address they name (datagrams for other addresses are kept in `Sim.stray`).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from peer_audio import (
    OPUS_PT,
    WIDE_RATE,
    ToneSender,
    WideTone,
    decoded,
    dominant_freq,
    level_at,
    peak_freqs,
    rms,
    spectrum,
)

from bridgeline.core.effects import LegAudio
from bridgeline.media import g711, g722, opus
from bridgeline.media.leg_types import Address, LatchPolicy
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket
from bridgeline.media.runtime import TICK_S, Arrived, MediaEvent, MediaRuntime
from bridgeline.media.srtp import SrtpContext, SrtpKeys

__all__ = ["dominant_freq", "level_at", "peak_freqs", "rms", "spectrum"]

RATE = 8000
PCMU, PCMA, G722 = g711.PCMU, g711.PCMA, g722.PAYLOAD_TYPE
OPUS = OPUS_PT  # a peer's payload type: Opus under a dynamic number, connected as opus.CODEC_ID
_ports = itertools.count(40000, 2)


@dataclass(eq=False)
class SimPeer(ToneSender):
    """A phone: sends a G.711 tone, or a 16 kHz one in G.722 (silence with freq None), and records
    the RTP it is sent."""

    freq: float | tuple[float, ...] | None
    payload_type: int = PCMU
    address: Address = field(default_factory=lambda: ("127.0.0.1", next(_ports)))
    ssrc: int = 0x1234_5678
    seq: int = 1000
    ts: int = 50_000
    received: list[tuple[float, RtpPacket]] = field(default_factory=list)
    # An SRTP phone (Sim.join with keys): protects what it sends, unprotects what it gets, and
    # keeps the datagrams as they were on the wire.
    srtp: SrtpContext | None = None
    wire: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.freq is None:
            self.tone = None
        elif self.payload_type in (G722, OPUS):
            assert isinstance(self.freq, int | float), "a wideband test phone sends one tone"
            self.tone = WideTone(self.freq)
        else:
            self.tone = ToneSource(self.freq)

    @property
    def rate(self) -> int:
        """The sample rate of what it hears (pcm_since): 16 kHz for G.722."""
        return WIDE_RATE if self.payload_type in (G722, OPUS) else RATE

    def audio_packet(self) -> bytes:
        data = self.next_audio_packet().serialize()
        return data if self.srtp is None else self.srtp.protect(data)

    def audio_packets(self) -> list[bytes]:
        """One tick's datagrams (an Opus phone with another packet time than 20 ms: 0 to 2)."""
        datagrams = [p.serialize() for p in self.next_audio_packets()]
        return datagrams if self.srtp is None else [self.srtp.protect(d) for d in datagrams]

    @property
    def packets(self) -> list[RtpPacket]:
        return [p for _, p in self.received]

    def pcm_since(self, t: float) -> NDArray[np.int16]:
        """Decoded audio of the packets received at or after virtual time t, in sequence order."""
        return decoded(p for at, p in self.received if at >= t)

    def count_since(self, t: float) -> int:
        return sum(1 for at, _ in self.received if at >= t)


class Sim:
    """A runtime, its virtual clock and the peers; `talking` maps a peer to (leg id, source address).
    With `rounds` (a test module's fixture may set it for all its Sims) what is sent waits for the
    next `flush` or `step` and is handed over as one read round (`receive_all`), as the SIP
    carrier's media thread does; without, each datagram is handed over as it is sent (`receive`)."""

    rounds: ClassVar[bool] = False

    def __init__(self, latch: LatchPolicy | None = None, *, seed: int = 1) -> None:
        self.now = 1000.0
        self.runtime = MediaRuntime(rng=random.Random(seed), latch=latch or LatchPolicy(), origin=self.now)
        self.peers: dict[Address, SimPeer] = {}
        self.talking: dict[int, tuple[SimPeer, str, Address]] = {}  # id(peer) -> peer, leg, from
        self.events: list[MediaEvent] = []
        self.stray: list[tuple[str, bytes, Address]] = []
        self._round: list[Arrived] = []

    def peer(self, freq: float | tuple[float, ...] | None, payload_type: int = PCMU) -> SimPeer:
        peer = SimPeer(freq, payload_type)
        self.peers[peer.address] = peer
        return peer

    def join(
        self,
        leg_id: str,
        peer: SimPeer,
        *,
        send: bool = True,
        telephone_event_pt: int | None = 101,
        ptime_ms: int = 20,
        talk: bool = True,
        srtp: SrtpKeys | None = None,
        fmtp: str | None = None,
    ) -> None:
        """Open and connect a leg whose SDP address is the peer's, and let the peer talk to it;
        with `srtp` (the leg's keys) the peer speaks SRTP with the mirror image of them."""
        if srtp is not None:
            peer.srtp = SrtpContext(SrtpKeys(srtp.suite, srtp.remote_key, srtp.local_key))
        self.runtime.open_leg(leg_id)
        self.runtime.connect_leg(
            leg_id,
            remote=peer.address,
            payload_type=opus.CODEC_ID if peer.payload_type == OPUS else peer.payload_type,
            wire_payload_type=peer.payload_type,
            fmtp=fmtp,
            telephone_event_pt=telephone_event_pt,
            send=send,
            ptime_ms=ptime_ms,
            now=self.now,
            srtp=srtp,
        )
        if talk:
            self.start_talking(peer, leg_id)

    def start_talking(self, peer: SimPeer, leg_id: str, source: Address | None = None) -> None:
        """From now on the peer sends one packet per tick to the leg (from `source`: a NAT's address)."""
        self.peers.setdefault(source or peer.address, peer)
        self.talking[id(peer)] = (peer, leg_id, source or peer.address)

    def stop_talking(self, peer: SimPeer) -> None:
        self.talking.pop(id(peer), None)

    def send(self, leg_id: str, data: bytes, source: Address, kind: str = "rtp") -> None:
        assert kind in ("rtp", "rtcp")
        arrived: Arrived = (leg_id, "rtp" if kind == "rtp" else "rtcp", data, source)
        if self.rounds:
            self._round.append(arrived)
        else:
            self.runtime.receive(*arrived, self.now)

    def flush(self) -> None:
        """Hand over the read round sent so far (with `rounds`)."""
        round_, self._round = self._round, []
        if round_:
            self.runtime.receive_all(round_, self.now)

    def step(self) -> None:
        """One tick: the talkers' packets arrive, then the runtime's tick is due and runs."""
        for peer, leg_id, source in list(self.talking.values()):
            for datagram in peer.audio_packets():
                self.send(leg_id, datagram, source)
        self.flush()
        self.deliver(self.runtime.tick(self.now))
        self.events += self.runtime.pop_events()
        self.now = round(self.now + TICK_S, 6)

    def deliver(self, datagrams: list[tuple[str, bytes, Address]]) -> None:
        for leg_id, data, dest in datagrams:
            peer = self.peers.get(dest)
            if peer is None:
                self.stray.append((leg_id, data, dest))
            elif peer.srtp is not None:
                peer.wire.append(data)
                peer.received.append((self.now, RtpPacket.parse(peer.srtp.unprotect(data))))
            else:
                peer.received.append((self.now, RtpPacket.parse(data)))

    def run(self, seconds: float) -> float:
        """Advance `seconds` of ticks; returns the virtual time it started at (a mark for pcm_since)."""
        mark = self.now
        for _ in range(round(seconds / TICK_S)):
            self.step()
        return mark

    def settle(self, seconds: float = 0.3) -> float:
        """Let the jitter buffers fill, then return the mark where the measurement starts."""
        self.run(seconds)
        return self.now


# Six tones apart from each other and from their harmonics: who hears whom, by frequency.
FREQS = (1430, 1770, 2330, 2590, 2760, 2970)


def assert_isolated(conf_of: list[int], hears: list[set[int]], codecs: list[int] | None = None) -> None:
    """Leg i (saying FREQS[i], in `codecs[i]`, PCMU by default) is in conference conf_of[i] and its
    route names hears[i]: it hears exactly the legs of its own conference that its route names,
    never itself, never a stranger."""
    sim = Sim()
    legs = [f"l{i}" for i in range(len(FREQS))]
    peers = [sim.peer(freq, codec) for freq, codec in zip(FREQS, codecs or [PCMU] * len(FREQS), strict=True)]
    for leg, peer in zip(legs, peers, strict=True):
        sim.join(leg, peer)
    for conf in set(conf_of):
        members = [i for i in range(len(FREQS)) if conf_of[i] == conf]
        sim.runtime.set_routes(
            f"c{conf}",
            [LegAudio(legs[i], tuple(legs[h] for h in sorted(hears[i])), None) for i in members],
            {},
        )
    # libopus's encoder ramps its coding of a newly heard tone in over about a second (its bandwidth
    # and bit allocation adapt): seen as 0.36, 0.62, then 0.99 of a tone's level in successive 0.4 s
    # windows. Isolation is about who is heard at all, so an Opus listener is measured once it settled.
    mark = sim.settle(1.2 if OPUS in (codecs or ()) else 0.3)
    sim.run(0.4)
    for i, peer in enumerate(peers):
        pcm = peer.pcm_since(mark)
        expected = {h for h in hears[i] if h != i and conf_of[h] == conf_of[i]}
        if not expected:
            assert rms(pcm) < 50
            continue
        # Opus is a perceptual codec: its coding noise beside strong tones reaches about -30 dB of
        # the strongest, and -26 dB (0.0504) with five tones mixed into one Opus stream (G.711's and
        # G.722's stays under -34 dB); a tone that leaked is above 0.5, five times the Opus bound.
        quiet = 0.1 if peer.payload_type == OPUS else 0.02
        for j, freq in enumerate(FREQS):
            level = level_at(pcm, freq, rate=peer.rate)
            assert level > 0.5 if j in expected else level < quiet, (i, j, level, codecs)
