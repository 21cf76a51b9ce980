"""The media engine the SIP carrier uses: a thin shell around the pure `media/runtime.py`.

The shell owns what the runtime must not: the port pool and the legs' sockets (bound here, on the
caller's thread, so a dial can put its port in the SDP at once), the clock and the 20 ms schedule,
which run in the media thread (`media_thread.py`), and the music library (`music.py`), whose specs
it resolves into `AudioSource` values for the runtime. Every public method runs on the event loop's
thread and returns at once: control calls are queued to the media thread, and its events (DTMF,
finished messages) come back through the event loop.

Music or message sources that cannot be used play the default instead and are reported through
`on_media_failed`, once per leg hearing them; for that the shell keeps its own copy of who is in
which conference hearing which music (the runtime's copy belongs to the media thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import sys
from collections.abc import Callable, Sequence
from typing import Final

import structlog

from bridgeline.adapters.carriers.sip.media_taps import MediaTaps
from bridgeline.adapters.carriers.sip.media_thread import MediaLoop
from bridgeline.adapters.carriers.sip.music import DEFAULT_SPECS, SETTING_FOR, SILENCE, MusicLibrary, spec_for
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.adapters.carriers.sip.rtp_udp import MediaPortsExhausted, PortPool, peer_address
from bridgeline.adapters.carriers.sip.settings import RtpSettings
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media.leg_types import DEFAULT_LATCH, Address, LatchPolicy, check_media_params
from bridgeline.media.player import AudioSource, SharedSource
from bridgeline.media.runtime import (
    DtmfReceived,
    MediaEvent,
    MediaRuntime,
    PlaybackFinished,
    Relatched,
    SourceRefused,
    SrtpDropped,
    UnknownLeg,
)
from bridgeline.media.srtp import SrtpKeys, check_keys

__all__ = ["LatchPolicy", "MediaEngine", "MediaPortsExhausted", "SrtpKeys", "UnknownLeg"]

log = structlog.get_logger(__name__)

# The media thread needs the GIL promptly, and not once per tick but once per system call: every
# recvfrom, sendto and poll releases the GIL, a busy event loop takes it at once, and the media
# thread then waits up to a switch interval (5 ms by default) to get it back: the convoy effect. At
# 50 legs and an event loop busy 80 % of the time (measured, 2 cores): 1 ms left 4-17 % of the ticks
# more than 5 ms late (up to 80 ms), 0.1 ms left 0.2-0.6 % (at most 7 ms). The cost is more switches
# only while both threads want the GIL, i.e. during the media thread's ~1 ms of work per tick.
SWITCH_INTERVAL_S: Final = 0.0001


class MediaEngine(MediaTaps):
    """See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port_min: int = 20000,
        port_max: int = 20999,
        ptime_ms: int = 20,
        media: MediaLimits | None = None,
        latch: LatchPolicy = DEFAULT_LATCH,
        realtime_priority: int = 0,
    ) -> None:
        if ptime_ms != 20:
            raise ValueError("the media layer mixes 20 ms frames: ptime_ms must be 20")
        self.host = host
        self.latch = latch
        self._pool = PortPool(host, port_min, port_max)
        self._library = MusicLibrary(media, on_loaded=self._load_ended)
        # OS entropy for the streams' SSRC, sequence and timestamp origins (RFC 3550).
        self._runtime = MediaRuntime(rng=random.SystemRandom(), latch=latch)
        self._media = MediaLoop(
            self._runtime, self._pool, self._events_from_media_thread, realtime_priority=realtime_priority
        )
        self._ports: dict[str, int] = {}  # open leg id -> RTP port
        self._sockets_opened = 0
        # Who hears which music, for failure reports: conference id -> its legs and music settings.
        self._confs: dict[str, tuple[tuple[LegAudio, ...], MusicSources]] = {}
        self._member_of: dict[str, str] = {}  # leg id -> conference id
        # spec -> how many legs hear it, so that a routing change prunes the library at
        # O(that conference) instead of collecting every conference's music.
        self._hearers: dict[str, int] = {}
        self._playing: dict[str, tuple[int, str | None, AudioSource, Callable[[], None]]] = {}
        self._play_tokens = itertools.count()
        self._media_failed: Callable[[str, str, str], None] | None = None
        self._dtmf_callback: Callable[[str, str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Recordings: recording id -> (conference id, its leg or None for the conference mix, sink).
        # Written on the event loop, read by the media thread (a dict lookup per frame).
        self._recordings: dict[str, tuple[str, str | None, Callable[[str, bytes], None]]] = {}
        self._recorded_legs: dict[str, tuple[str, ...]] = {}  # conference id -> SetAudio.recorded
        self._media.record = self._record

    @classmethod
    def for_rtp(cls, rtp: RtpSettings, media: MediaLimits | None = None) -> MediaEngine:
        """The engine the SIP YAML's `rtp` section describes."""
        low, high = rtp.port_range
        latch = LatchPolicy(
            learning_window_s=rtp.learning_window_ms / 1000,
            relatch_silence_s=rtp.relatch_silence_ms / 1000,
            relatch_packets=rtp.relatch_packets,
            refused_log_interval_s=rtp.refused_log_interval_s,
        )
        return cls(
            host=rtp.host,
            port_min=low,
            port_max=high,
            latch=latch,
            media=media,
            realtime_priority=rtp.realtime_priority,
        )

    def fence(self, fenced: Callable[[], bool]) -> None:
        """Asked by the media thread before it sends: True while the node's lease does not hold."""
        self._media.fenced = fenced

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._media.running:
            return
        self._loop = asyncio.get_running_loop()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._media.start()

    async def stop(self) -> None:
        self._media.request_stop()
        await asyncio.to_thread(self._media.join)  # the loop goes on meanwhile, queueing commands
        self._media.stopped()
        self._runtime.flush_taps()  # the recordings' last block: the writers close them next
        self._record(self._runtime.pop_recorded())
        for leg_id in list(self._ports):
            self.close_leg(leg_id)
        self._media.close()
        self._confs.clear()
        self._member_of.clear()
        self._hearers.clear()
        self._library.prune(set())
        self._library.close()
        self._loop = None

    @property
    def stats(self) -> dict[str, int | float]:
        """Counters for /metrics; read across threads, so each is exact but they are not one snapshot."""
        c, ticks = self._runtime.counters, self._runtime.tick_stats
        return {
            "ticks": ticks.ticks,
            "late_ticks": ticks.late,
            "skipped_ticks": ticks.skipped,
            "max_lateness_ms": round(ticks.max_lateness * 1000, 3),
            "realtime": int(self._media.realtime),
            "legs": len(self._ports),
            "conferences": len(self._confs),
            "packets_in": c.packets_in,
            "packets_out": c.packets_out - self._media.send_dropped - self._media.send_fenced,
            "malformed_in": c.malformed_in,
            "rtcp_in": c.rtcp_in,
            "ignored_in": c.ignored_in,
            "send_dropped": self._media.send_dropped,
            "send_fenced": self._media.send_fenced,
            "open_sockets": self._sockets_opened - self._media.sockets_closed,
            "free_ports": self._pool.free,
            "media_loading": self._library.loading,
            "media_decodes": self._library.cache.decodes,
            "media_cache_bytes": self._library.cache.size,
            "rtp_refused_foreign_source": c.rtp_refused_foreign_source,
            "dtmf_refused_foreign_source": c.dtmf_refused_foreign_source,
            "rtcp_refused_foreign_source": c.rtcp_refused_foreign_source,
            "relatched": c.relatched,
            "srtp_auth_failed": c.srtp_auth_failed,
            "srtp_replayed": c.srtp_replayed,
            "srtp_protect_failed": c.srtp_protect_failed,
        }

    @property
    def media_limits(self) -> MediaLimits:
        """The bounds on music and message sources (media directory, sizes, times)."""
        return self._library.limits

    @property
    def port_capacity(self) -> int:
        """How many legs the port range holds (each takes an RTP/RTCP pair)."""
        return self._pool.capacity

    # ------------------------------------------------------------------ legs
    def open_leg(self, leg_id: str) -> int:
        """Bind an RTP/RTCP port pair for the leg and return the RTP port (the same one if already open).

        Synchronous, so a dial can send its INVITE without waiting; MediaPortsExhausted when the
        range is used up."""
        port = self._ports.get(leg_id)
        if port is not None:
            return port
        port, rtp, rtcp = self._pool.bind_pair()
        self._sockets_opened += 2
        self._ports[leg_id] = port
        media, runtime = self._media, self._runtime

        def open_(now: float) -> None:
            runtime.open_leg(leg_id)
            media.add_sockets(leg_id, port, rtp, rtcp)

        media.submit(open_)
        return port

    def connect_leg(
        self,
        leg_id: str,
        *,
        remote: Address,
        payload_type: int,
        telephone_event_pt: int | None,
        send: bool,
        ptime_ms: int = 20,
        srtp: SrtpKeys | None = None,
        wire_payload_type: int | None = None,
        fmtp: str | None = None,
    ) -> None:
        """Start media after SDP negotiation (ValueError for a codec other than G.711, G.722 or
        Opus, an odd ptime, unusable SRTP keys or a remote address of the other IP family);
        `payload_type` names the codec by its static number (Opus: `opus.CODEC_ID`),
        `wire_payload_type` the number the SDP gave it and `fmtp` the peer's format parameters;
        with `srtp` every packet is protected and checked (SRTP)."""
        self._check_open(leg_id)
        check_media_params(payload_type, ptime_ms)
        remote = peer_address(self._pool.family, remote[0], remote[1])
        if srtp is not None:
            check_keys(srtp)
        runtime = self._runtime

        def connect(now: float) -> None:  # now: the media thread's clock starts the learning window
            runtime.connect_leg(
                leg_id,
                remote=remote,
                payload_type=payload_type,
                telephone_event_pt=telephone_event_pt,
                send=send,
                ptime_ms=ptime_ms,
                now=now,
                srtp=srtp,
                wire_payload_type=wire_payload_type,
                fmtp=fmtp,
            )

        self._media.submit(connect)

    def update_leg(
        self,
        leg_id: str,
        *,
        remote: Address | None = None,
        send: bool | None = None,
        srtp: SrtpKeys | None = None,
    ) -> None:
        """Apply a peer re-INVITE: new address and/or direction (send=False: hold, send nothing),
        and the peer's SRTP key on an SRTP leg. A new address reopens the leg's source learning.
        ValueError for an address of the other IP family (nothing changed)."""
        self._check_open(leg_id)
        if remote is not None:
            remote = peer_address(self._pool.family, remote[0], remote[1])
        if srtp is not None:
            check_keys(srtp)
        runtime = self._runtime
        self._media.submit(
            lambda now: runtime.update_leg(leg_id, remote=remote, send=send, now=now, srtp=srtp)
        )

    def close_leg(self, leg_id: str) -> None:
        """Close the leg's sockets (on the media thread's next wake-up, within a tick) and cancel its
        message (without on_finished). Idempotent."""
        if self._ports.pop(leg_id, None) is None:
            return
        self._playing.pop(leg_id, None)
        cid = self._member_of.pop(leg_id, None)
        if cid is not None:
            self._leave(cid, {leg_id})
        media, runtime = self._media, self._runtime
        # Silent from now, not from the media thread's next wake-up: a tick already mixed must not
        # reach a leg released to another node once this node's lease holds again (docs/cluster.md).
        media.closing.add(leg_id)

        def close(now: float) -> None:
            runtime.close_leg(leg_id)
            media.close_sockets(leg_id)
            media.closing.discard(leg_id)

        media.submit(close)

    def _check_open(self, leg_id: str) -> None:
        if leg_id not in self._ports:
            raise UnknownLeg(leg_id)

    # ------------------------------------------------------------------ routing and messages
    def set_routes(self, conference_id: str, legs: Sequence[LegAudio], music: MusicSources) -> None:
        """Replace the conference's routing. Legs left out leave it; legs moved here leave their old one.

        Route entries naming legs outside this conference are ignored. Leg ids not opened yet are
        accepted (they are silent until opened and connected)."""
        new = tuple({la.leg_id: la for la in legs}.values())  # one entry per leg: the last wins
        heard_before = self._music_heard(conference_id)
        old = self._confs.get(conference_id)
        for la in old[0] if old is not None else ():
            if self._member_of.get(la.leg_id) == conference_id:
                del self._member_of[la.leg_id]
        for la in new:
            previous = self._member_of.get(la.leg_id)
            if previous is not None and previous != conference_id:
                self._leave(previous, {la.leg_id})
            self._member_of[la.leg_id] = conference_id
        self._set_conf(conference_id, (new, music) if new else None)
        sources: dict[Music, AudioSource | SharedSource] = {}
        for kind in {la.music for la in new if la.music is not None}:
            spec = spec_for(kind, music)
            if spec != SILENCE:
                sources[kind] = self._library.music(spec, DEFAULT_SPECS[kind])
        runtime = self._runtime
        self._media.submit(lambda now: runtime.set_routes(conference_id, new, sources))
        for leg_id, (setting, spec) in self._music_heard(conference_id).items():  # newly hearing a failure
            reason = self._library.failure(spec)
            if reason is not None and heard_before.get(leg_id) != (setting, spec):
                self._report_media_failed(leg_id, setting, reason)
        self._library.prune(self._hearers.keys())

    def _leave(self, conference_id: str, leg_ids: set[str]) -> None:
        """Our copy of the runtime's rule: a leg closed or moved elsewhere leaves its conference."""
        legs, music = self._confs[conference_id]
        for leg_id in leg_ids:
            self._member_of.pop(leg_id, None)
        remaining = tuple(la for la in legs if la.leg_id not in leg_ids)
        self._set_conf(conference_id, (remaining, music) if remaining else None)

    def _set_conf(self, conference_id: str, entry: tuple[tuple[LegAudio, ...], MusicSources] | None) -> None:
        """Replace (None: forget) the conference's legs and music, keeping `_hearers` counted."""
        hearers = self._hearers
        for _, spec in self._music_heard(conference_id).values():
            hearers[spec] -= 1
            if not hearers[spec]:
                del hearers[spec]
        if entry is None:
            self._confs.pop(conference_id, None)
            return
        self._confs[conference_id] = entry
        for _, spec in self._music_heard(conference_id).values():
            hearers[spec] = hearers.get(spec, 0) + 1

    def _music_heard(self, conference_id: str) -> dict[str, tuple[str, str]]:
        """leg id -> (setting, spec) of the music each leg of the conference hears."""
        legs, music = self._confs.get(conference_id, ((), MusicSources()))
        return {
            la.leg_id: (SETTING_FOR[la.music], spec_for(la.music, music))
            for la in legs
            if la.music is not None
        }

    # ------------------------------------------------------------------ recording taps: media_taps.py
    def play(self, leg_id: str, media: str | None, on_finished: Callable[[], None]) -> None:
        """Play a message once into the leg instead of its routes; on_finished runs on the event loop
        after its last frame. media: a tone spec (2 s), a WAV path, or None / unusable -> built-in
        beeps. A new play() replaces a running one, whose on_finished is then never called."""
        self._check_open(leg_id)
        source = self._library.message(media)
        token = next(self._play_tokens)
        self._playing[leg_id] = (token, media, source, on_finished)
        runtime = self._runtime
        self._media.submit(lambda now: runtime.play(leg_id, source, token))

    def on_media_failed(self, callback: Callable[[str, str, str], None]) -> None:
        """Register the callback for a music or message source that could not be used and plays the
        default instead: callback(leg_id, setting name, reason), once per leg hearing it."""
        self._media_failed = callback

    def on_dtmf(self, callback: Callable[[str, str], None]) -> None:
        """Register the callback for received DTMF digits: callback(leg_id, digit). The media thread
        has already relayed the digit to the legs that hear the sender."""
        self._dtmf_callback = callback

    # ------------------------------------------------------------------ back on the event loop
    def _load_ended(self) -> None:
        """From a library worker: a load ended; swap it in and report failures on the event loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._media_failures)

    def _media_failures(self) -> None:
        """Swap in sources that finished loading; report the failed ones to the legs that hear them."""
        for spec, reason in self._library.poll():
            for cid in list(self._confs):
                for leg_id, (setting, heard) in self._music_heard(cid).items():
                    if heard == spec:
                        self._report_media_failed(leg_id, setting, reason)
            for leg_id, (_, message_spec, _, _) in list(self._playing.items()):
                if message_spec == spec:
                    self._report_media_failed(leg_id, SETTING_FOR[Music.VOICEMAIL], reason)

    def _report_media_failed(self, leg_id: str, setting: str, reason: str) -> None:
        if self._media_failed is not None:
            try:
                self._media_failed(leg_id, setting, reason)
            except Exception:
                log.exception("media.failure_callback_failed", leg_id=leg_id)

    def _events_from_media_thread(self, events: list[MediaEvent]) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is left to tell
                loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[MediaEvent]) -> None:
        for event in events:
            try:
                self._handle(event)
            except Exception:  # a callback bug must not lose the other events
                log.exception("media.event_callback_failed", media_event=repr(event))

    def _handle(self, event: MediaEvent) -> None:
        if isinstance(event, DtmfReceived):
            if self._dtmf_callback is not None and event.leg_id in self._ports:
                self._dtmf_callback(event.leg_id, event.digit)
        elif isinstance(event, PlaybackFinished):
            playing = self._playing.get(event.leg_id)
            if playing is not None and playing[0] == event.token:  # not replaced by a later play()
                del self._playing[event.leg_id]
                playing[3]()
        elif isinstance(event, SourceRefused):
            log.warning(
                "rtp_foreign_source_refused",
                leg_id=event.leg_id,
                kind=event.kind,
                source=event.source,
                latched=event.latched,
                refused_since_last_log=event.refused_since_last,
            )
        elif isinstance(event, SrtpDropped):
            log.warning(
                "srtp_packets_dropped",
                leg_id=event.leg_id,
                kind=event.kind,
                reason=event.reason,
                source=event.source,
                dropped_since_last_log=event.dropped_since_last,
            )
        elif isinstance(event, Relatched):
            log.info(
                "rtp_source_relatched", leg_id=event.leg_id, source=event.source, previous=event.previous
            )
