"""The media runtime: every leg's media, the conferences' routes and the 20 ms tick, with no I/O.

In the style of `sip/endpoint.py` (and aioquic): the shell that owns the sockets and the clock feeds
it datagrams with `receive(leg_id, kind, data, source, now)` (a read round of them at once with
`receive_all`), asks `next_tick_at` when to call `tick(now)`, sends the datagrams `tick` returns
and handles the events `pop_events` drains (DTMF digits, finished messages, refused sources,
re-latches). Control calls (`open_leg`, `connect_leg`,
`update_leg`, `close_leg`, `set_routes`, `play`) change what the next tick sends. Music and messages
are `AudioSource` values that the shell resolved; the runtime never sees settings or files.

The schedule: tick n is due at origin + n * 20 ms (absolute deadlines, so lateness never adds up to
drift). A tick called more than 5 ms after its deadline counts as late; one more than 3 ticks behind
skips the missed ticks instead of bursting them to the peers (the jitter buffers drop what piled up
meanwhile).

Routing comes from the conference core as `LegAudio` (who hears whom, plus a music kind). A leg
hears only legs of its own conference; a leg in no conference, or with an empty route, hears
silence (RTP keeps flowing, which keeps NAT bindings and the peer's jitter buffer alive). A message
started with `play` replaces whatever the leg would hear until it has finished. Digits are relayed
along the audio routes: to every leg that hears the sender, except a leg hearing music.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.jitter import FRAME_SAMPLES
from bridgeline.media.layout import TickLayout
from bridgeline.media.leg import Leg, Outgoing
from bridgeline.media.leg_types import (
    DEFAULT_LATCH,
    Address,
    Counters,
    LatchPolicy,
    Relatched,
    SourceRefused,
    SrtpDropped,
)
from bridgeline.media.player import AudioSource, SharedSource
from bridgeline.media.routes import ConferenceMix, run_tick
from bridgeline.media.srtp import Inbound, SrtpKeys, ToProtect, protect_all, refusal, unprotect_all
from bridgeline.media.taps import TapBlock

__all__ = [
    "DtmfReceived",
    "MediaEvent",
    "MediaRuntime",
    "PlaybackFinished",
    "Relatched",
    "SourceRefused",
    "SrtpDropped",
    "UnknownLeg",
]

# A datagram read from a leg's RTP or RTCP port: (leg id, which port, the bytes, their source).
Arrived = tuple[str, Literal["rtp", "rtcp"], bytes, Address]

TICK_S: Final = 0.020
LATE_S: Final = 0.005  # a tick starting more than 5 ms after its deadline counts as late
MAX_BEHIND_TICKS: Final = 3  # further behind than this: skip the missed ticks instead of bursting
# Skipped ticks are silence in recordings, up to a minute's worth per stall (a clock jump of hours
# would otherwise make one tick write hours of silence).
MAX_SILENCE_TICKS: Final = 3000


class UnknownLeg(KeyError):
    """The leg id was never opened, or has been closed."""


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    leg_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """A message started by `play(leg_id, source, token)` played its last frame."""

    leg_id: str
    token: object


MediaEvent = DtmfReceived | PlaybackFinished | SourceRefused | Relatched | SrtpDropped


@dataclass(slots=True)
class TickStats:
    ticks: int = 0
    late: int = 0  # more than LATE_S after the deadline
    skipped: int = 0
    max_lateness: float = 0.0  # seconds


class MediaRuntime:
    """See the module docstring. Single-threaded: only the shell's media thread may call it."""

    def __init__(
        self, *, rng: random.Random, latch: LatchPolicy = DEFAULT_LATCH, origin: float = 0.0
    ) -> None:
        self.latch = latch
        self.counters = Counters()
        self.tick_stats = TickStats()
        self._rng = rng
        self._legs: dict[str, Leg] = {}
        self._confs: dict[str, ConferenceMix] = {}
        self._member_of: dict[str, str] = {}  # leg id -> conference id
        self._shared: dict[int, tuple[AudioSource, SharedSource]] = {}  # id(source) -> it, shared
        # Music in use, counted so that a routing change costs O(that conference), not O(all):
        # id(shared source) -> how many conferences play it; of those wrapped here, id(source);
        # and the ones whose count fell to 0, forgotten at the end of the next set_routes.
        self._music_users: dict[int, int] = {}
        self._wrapped: dict[int, int] = {}
        self._unused: set[int] = set()
        self._out: list[Outgoing] = []  # filled by the legs during a tick
        self._to_protect: list[ToProtect] = []  # SRTP legs' datagrams, protected into _out at its end
        self._inbound: Inbound = {}  # connected SRTP legs' unprotect, kept by the legs (receive_all)
        self._events: list[MediaEvent] = []
        # Recording taps by conference: recording id -> the legs it hears; their audio in chunks. The
        # narrowband ones' block is planned again at the next tick after a change of taps, routes or legs.
        self._taps: dict[str, dict[str, tuple[str, ...]]] = {}
        self._recorded: list[tuple[str, bytes]] = []
        self._tap_block = TapBlock()
        self._taps_changed = False
        self._layout = TickLayout(self._legs, self._member_of)  # patched on every change
        self._origin = origin
        self._n = 0  # the next tick's number

    # ------------------------------------------------------------------ the schedule
    def restart_schedule(self, now: float) -> None:
        """Tick 0 is due at `now` (the shell starting its loop)."""
        self._origin, self._n = now, 0

    @property
    def next_tick_at(self) -> float:
        return self._origin + self._n * TICK_S

    def tick(self, now: float) -> list[Outgoing]:
        """Run the tick that is due (none before `next_tick_at`) and return the datagrams to send."""
        deadline = self.next_tick_at
        if now < deadline:
            return []
        stats = self.tick_stats
        lateness = now - deadline
        if lateness > LATE_S:
            stats.late += 1
        stats.max_lateness = max(stats.max_lateness, lateness)
        if lateness > MAX_BEHIND_TICKS * TICK_S:
            behind = int(lateness // TICK_S)
            self._n += behind
            stats.skipped += behind
            if self._taps:
                self._record_skipped(min(behind, MAX_SILENCE_TICKS))
        stats.ticks += 1
        n = self._n
        self._n = n + 1  # first: a tick that raises is not retried at once, and again, and again
        self._out.clear()  # what a tick that raised had queued
        self._to_protect.clear()
        layout = self._layout
        layout.refresh()
        block = self._tap_block
        if self._taps_changed:
            self._taps_changed = False
            block.plan(self._narrow_taps(), self._recorded)
        keep_frames = block.active
        for leg in run_tick(layout, self._legs, n, self._recorded, keep_frames):
            self._events.append(PlaybackFinished(leg.leg_id, leg.message_token))
            leg.message_token = None
        if keep_frames:
            block.record(self._recorded)
        if self._to_protect:  # one call into libsrtp for every SRTP leg (media/srtp.py)
            self.counters.srtp_protect_failed += protect_all(self._to_protect, self._out)
            self._to_protect.clear()
        out = self._out[:]
        self._out.clear()  # the legs keep appending to this same list
        return out

    def _record_skipped(self, ticks: int) -> None:
        """Silence for the skipped ticks in every recording (narrowband taps' block, wideband taps'
        frames), before this tick's: a stalled thread shows in the file as a gap, not as lost time."""
        self._tap_block.skip(ticks, self._recorded)
        silence = bytes(2 * FRAME_SAMPLES * ticks)
        for conf in self._layout.mixed.values():
            if conf.wideband:
                self._recorded.extend((recording_id, silence) for recording_id, _ in conf.tap_rows)

    def pop_recorded(self) -> list[tuple[str, bytes]]:
        """The recording taps' audio since the last call, (recording id, 8 kHz int16 PCM: one or more
        20 ms frames), each recording's in tick order. A narrowband conference's taps come in chunks
        of up to `taps.BLOCK_TICKS` frames (`flush_tap` hands out the frames so far)."""
        recorded, self._recorded = self._recorded, []
        return recorded

    def flush_tap(self, recording_id: str) -> None:
        """Let the next `pop_recorded` hold every frame the tap recorded up to now (a pause, resume or
        stop boundary: what follows is in later chunks)."""
        self._tap_block.flush(recording_id, self._recorded)

    def flush_taps(self) -> None:
        """`flush_tap` for every tap (a shutdown)."""
        self._tap_block.flush_all(self._recorded)

    def set_tap(self, conference_id: str, recording_id: str, leg_ids: Sequence[str]) -> None:
        """Record what `leg_ids` of the conference say, mixed, every tick (a conference recording: its
        main room's talkers, changed with each routing; a participant track: one leg). A tap is
        moved by calling this again, removed by `remove_tap`; a tap of a conference without routes
        waits for them (its frames start with the conference's first mixed tick)."""
        for taps in self._taps.values():
            taps.pop(recording_id, None)
        self._taps.setdefault(conference_id, {})[recording_id] = tuple(leg_ids)
        self._retap(conference_id)

    def remove_tap(self, recording_id: str) -> None:
        """Stop the tap; its last frames are in the next `pop_recorded`."""
        self._tap_block.flush(recording_id, self._recorded)
        for conference_id, taps in list(self._taps.items()):
            if taps.pop(recording_id, None) is not None:
                if not taps:
                    del self._taps[conference_id]
                self._retap(conference_id)

    def _narrow_taps(self) -> list[tuple[str, list[Leg | None]]]:
        """The taps of narrowband conferences, with their legs (wideband ones are mixer rows)."""
        legs, confs = self._legs, self._confs
        return [
            (recording_id, [legs.get(leg_id) for leg_id in leg_ids])
            for conference_id, taps in self._taps.items()
            if (conf := confs.get(conference_id)) is not None and not conf.wideband
            for recording_id, leg_ids in taps.items()
        ]

    def _retap(self, conference_id: str) -> None:
        self._taps_changed = True
        conf = self._confs.get(conference_id)
        if conf is not None:
            conf.taps = dict(self._taps.get(conference_id, {}))
            conf.configure(conf.legs, conf.music, conf.wideband)
            self._layout.place(conf)

    def pop_events(self) -> list[MediaEvent]:
        """The events since the last call, oldest first."""
        events = self._events[:]
        self._events.clear()  # the legs keep appending to this same list
        return events

    # ------------------------------------------------------------------ receive
    def receive(
        self, leg_id: str, kind: Literal["rtp", "rtcp"], data: bytes, source: Address, now: float
    ) -> None:
        """A datagram that arrived on the leg's RTP or RTCP port; unknown legs' datagrams are dropped."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        if kind == "rtp":
            leg.rtp_received(data, source, now)
        else:
            leg.rtcp_received(data, source, now)

    def receive_all(self, arrived: list[Arrived], now: float) -> None:
        """`receive` for each datagram of a read round, in order; the RTP of SRTP legs is unprotected
        first, all of it in one call into libsrtp (`srtp.unprotect_all`: its code stays in the CPU's
        caches from one packet to the next). A packet libsrtp refuses is dropped and counted by its
        leg as `receive` would. Handling a datagram never changes an SRTP context, so checking the
        round first and handing it over after is the same as checking each packet as it comes."""
        legs = self._legs
        for (leg_id, kind, data, source), checked in zip(
            arrived, unprotect_all(arrived, self._inbound), strict=True
        ):
            leg = legs.get(leg_id)
            if leg is None:
                continue
            if checked is None:  # not an SRTP leg's RTP (or SRTCP on its RTP port): as `receive`
                if kind == "rtp":
                    leg.rtp_received(data, source, now)
                else:
                    leg.rtcp_received(data, source, now)
            elif isinstance(checked, bytes):
                leg.rtp_received(checked, source, now, True)
            else:
                leg.srtp_refused("rtp", refusal(checked), source, now)

    # ------------------------------------------------------------------ legs
    @property
    def leg_count(self) -> int:
        return len(self._legs)

    @property
    def conference_count(self) -> int:
        return len(self._confs)

    def open_leg(self, leg_id: str) -> None:
        """A new leg: silent, sending nothing until connected. Idempotent."""
        if leg_id in self._legs:
            return
        self._legs[leg_id] = Leg(
            leg_id,
            self.counters,
            self._out,
            self._to_protect,
            self._inbound,
            self._events,
            self._dtmf_received,
            self._rng,
            self.latch,
        )
        self._taps_changed = bool(self._taps)  # a tap may name it before it was opened
        self._relayout(leg_id)

    def connect_leg(
        self,
        leg_id: str,
        *,
        remote: Address,
        payload_type: int,
        telephone_event_pt: int | None,
        send: bool,
        now: float,
        ptime_ms: int = 20,
        srtp: SrtpKeys | None = None,
        wire_payload_type: int | None = None,
        fmtp: str | None = None,
    ) -> None:
        """Start media after SDP negotiation (ValueError for a codec other than G.711, G.722 or Opus
        (`opus.CODEC_ID`), an odd ptime or unusable SRTP keys); `now` starts the learning window;
        `srtp`: protect and check every packet; `wire_payload_type`: the codec's number in the SDP
        when it is not its static one; `fmtp`: the peer's format parameters for it (Opus)."""
        self._leg(leg_id).connect(
            remote, payload_type, telephone_event_pt, send, ptime_ms, now, srtp, wire_payload_type, fmtp
        )
        self._relayout(leg_id)  # the payload type picks the batch's encodings

    def update_leg(
        self,
        leg_id: str,
        *,
        now: float,
        remote: Address | None = None,
        send: bool | None = None,
        srtp: SrtpKeys | None = None,
    ) -> None:
        """Apply a peer re-INVITE: new address and/or direction (send=False: hold, send nothing),
        and on an SRTP leg the peer's key, which a re-offer may renew. A new address reopens the
        leg's source learning."""
        self._leg(leg_id).update(remote, send, now, srtp)

    def close_leg(self, leg_id: str) -> None:
        """Forget the leg and cancel its message (without PlaybackFinished). Idempotent."""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        leg.close()
        self._taps_changed = bool(self._taps)  # a tap may name it, in its conference or not
        cid = self._member_of.get(leg_id)
        if cid is not None:
            self._leave(cid, {leg_id})
        self._layout.sync_leg(leg_id)

    def _relayout(self, leg_id: str) -> None:
        """The leg was opened or connected: lay out its conference again, or it alone."""
        cid = self._member_of.get(leg_id)
        if cid is None:
            self._layout.sync_leg(leg_id)
        else:
            self._taps_changed |= cid in self._taps
            conf = self._confs[cid]
            wideband = self._wideband(la.leg_id for la in conf.legs)
            if wideband != conf.wideband:  # a G.722/Opus leg came or went: the mix rate changes
                conf.configure(conf.legs, conf.music, wideband)
            self._layout.place(conf)

    def _wideband(self, leg_ids: Iterable[str]) -> bool:
        """Some of the legs speaks G.722 or Opus: their conference is mixed at 16 kHz."""
        legs = self._legs
        return any(leg.wideband for leg in map(legs.get, leg_ids) if leg is not None)

    def _leg(self, leg_id: str) -> Leg:
        leg = self._legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(leg_id)
        return leg

    # ------------------------------------------------------------------ routing, messages, DTMF
    def set_routes(
        self,
        conference_id: str,
        legs: Sequence[LegAudio],
        music: Mapping[Music, AudioSource | SharedSource],
    ) -> None:
        """Replace the conference's routing. Legs left out leave it; legs moved here leave their old one.

        `music`: what each kind plays in this conference (a kind left out is silent); one source
        object given to several conferences advances once per tick for all (a `SharedSource` may
        be given as it is, as the SIP shell does with its music library's sources). Route entries naming
        legs outside this conference are ignored. Leg ids not opened yet are accepted (they are
        silent until opened and connected)."""
        layout = self._layout
        self._taps_changed |= conference_id in self._taps  # its taps' legs, or its path, may change
        new = {la.leg_id: la for la in legs}  # one entry per leg: the last wins
        old = self._confs.get(conference_id)
        if old is not None:
            for la in old.legs:
                if la.leg_id not in new and self._member_of.get(la.leg_id) == conference_id:
                    del self._member_of[la.leg_id]
                    layout.sync_leg(la.leg_id)
        for leg_id in new:
            previous = self._member_of.get(leg_id)
            if previous is not None and previous != conference_id:
                self._leave(previous, {leg_id})
        if not new:
            if old is not None:
                del self._confs[conference_id]
                self._release_music(old.music)
                layout.remove(conference_id)
        else:
            conf = old if old is not None else ConferenceMix(conference_id)
            conf.taps = dict(self._taps.get(conference_id, {}))
            self._confs[conference_id] = conf
            for leg_id in new:
                self._member_of[leg_id] = conference_id
                layout.sync_leg(leg_id)
            shared = {kind: self._share(src) for kind, src in music.items()}
            self._hold_music(shared)  # before releasing the old: a source kept is never forgotten
            if old is not None:
                self._release_music(old.music)
            conf.configure(tuple(new.values()), shared, self._wideband(new))
            layout.place(conf)
        for key in self._unused:  # the music nobody plays any more (since this or another change)
            if key not in self._music_users and key in self._wrapped:
                del self._shared[self._wrapped.pop(key)]
        self._unused.clear()

    def _share(self, source: AudioSource | SharedSource) -> SharedSource:
        if isinstance(source, SharedSource):
            return source
        pair = self._shared.get(id(source))
        if pair is None:
            pair = self._shared[id(source)] = (source, SharedSource(source))
            self._wrapped[id(pair[1])] = id(source)
        return pair[1]

    def _hold_music(self, music: Mapping[Music, SharedSource]) -> None:
        users = self._music_users
        for key in {id(shared) for shared in music.values()}:  # once per conference
            users[key] = users.get(key, 0) + 1

    def _release_music(self, music: Mapping[Music, SharedSource]) -> None:
        users = self._music_users
        for key in {id(shared) for shared in music.values()}:
            users[key] -= 1
            if not users[key]:
                del users[key]
                self._unused.add(key)

    def _leave(self, conference_id: str, leg_ids: set[str]) -> None:
        """The legs leave the conference (closed, or moved elsewhere: the caller syncs them)."""
        self._taps_changed |= conference_id in self._taps
        conf = self._confs[conference_id]
        for leg_id in leg_ids:
            self._member_of.pop(leg_id, None)
        remaining = tuple(la for la in conf.legs if la.leg_id not in leg_ids)
        if remaining:
            conf.configure(remaining, conf.music, self._wideband(la.leg_id for la in remaining))
            self._layout.place(conf)
        else:
            del self._confs[conference_id]
            self._release_music(conf.music)
            self._layout.remove(conference_id)

    def play(self, leg_id: str, source: AudioSource, token: object = None) -> None:
        """Play a message once into the leg instead of its routes; PlaybackFinished(leg_id, token)
        follows the tick of its last frame. A new play() replaces a running one, which then never
        finishes."""
        leg = self._leg(leg_id)
        leg.message, leg.message_token = source, token

    def _dtmf_received(self, leg_id: str, digit: str) -> None:
        self._events.append(DtmfReceived(leg_id, digit))
        # Re-send the digit to every leg that hears its sender: DTMF follows the audio routes, so a
        # held member's digits reach nobody and a private consultation keeps its digits private.
        conf = self._confs.get(self._member_of.get(leg_id, ""))
        if conf is None:
            return
        for la in conf.legs:
            if leg_id in la.hears and la.leg_id != leg_id and la.music is None:
                listener = self._legs.get(la.leg_id)
                if listener is not None:
                    listener.queue_dtmf(digit)
