"""The asyncio media engine: RTP legs, per-conference mixing on a 20 ms tick, music and messages.

One task ticks every 20 ms on absolute deadlines (start + n * 20 ms), so scheduling jitter never
accumulates into drift. Each tick, per conference: pull one frame per leg from its jitter buffer,
write music frames, mix by the routes, encode per codec and send one tick of RTP to every leg that
wants media (that work, and the routes compiled for it, are in `media_tick.py`). Receiving is
batched: every leg's sockets sit in one epoll, which the event loop watches; on a wake-up, and
again at the start of each tick, one poll(0) tells which sockets have datagrams waiting and those
are read with plain recvfrom calls. No event-loop callback per datagram: that cost more than all
the media work at a few hundred legs.

Routing comes from the conference core as `LegAudio` (who hears whom, plus a music kind). A leg
hears only legs of its own conference; a leg in no conference, or with an empty route, hears
silence (RTP keeps flowing, which keeps NAT bindings and the peer's jitter buffer alive). A message
started with `play` replaces whatever the leg would hear until it has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Callable, Sequence
from typing import Final

import structlog

from bridgeline.adapters.carriers.sip.media_tick import ConferenceMix, TickLayout, build_layout, run_tick
from bridgeline.adapters.carriers.sip.music import SETTING_FOR, MusicLibrary, spec_for
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.adapters.carriers.sip.rtp_udp import (
    DEFAULT_LATCH,
    Address,
    Counters,
    LatchPolicy,
    MediaPortsExhausted,
    PortPool,
    RtpLeg,
)
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media.player import AudioSource

__all__ = ["LatchPolicy", "MediaEngine", "MediaPortsExhausted", "UnknownLeg"]

log = structlog.get_logger(__name__)

LATE_S: Final = 0.005  # a tick starting more than 5 ms after its deadline counts as late
MAX_BEHIND_TICKS: Final = 3  # further behind than this: skip the missed ticks instead of bursting
# Receive rounds per tick: each round reads one datagram from every socket that has one, so a leg
# gets at most this many per tick (a flood on one port cannot starve the others or the tick).
MAX_RECEIVE_ROUNDS: Final = 8
_DATAGRAM_MAX: Final = 2048  # larger than any G.711 packet up to 120 ms; longer datagrams are cut


class UnknownLeg(KeyError):
    """The leg id was never opened, or has been closed."""


class MediaEngine:
    """See the module docstring. Every method runs on the event loop's thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port_min: int = 20000,
        port_max: int = 20999,
        ptime_ms: int = 20,
        media: MediaLimits | None = None,
        latch: LatchPolicy = DEFAULT_LATCH,
    ) -> None:
        if ptime_ms != 20:
            raise ValueError("the media layer mixes 20 ms frames: ptime_ms must be 20")
        self.host = host
        self.latch = latch
        self._period = ptime_ms / 1000
        self._pool = PortPool(host, port_min, port_max)
        self._counters = Counters()
        self._library = MusicLibrary(media)
        self._messages: dict[str, tuple[str, AudioSource]] = {}  # leg id -> the message spec it plays
        self._media_failed: Callable[[str, str, str], None] | None = None
        self._legs: dict[str, RtpLeg] = {}
        self._confs: dict[str, ConferenceMix] = {}
        self._member_of: dict[str, str] = {}  # leg id -> conference id
        self._dtmf_callback: Callable[[str, str], None] | None = None
        self._digits: list[tuple[str, str]] = []  # received this tick, dispatched after the receive
        self._poller: select.epoll | None = None  # every open leg's two sockets, created on demand
        # fd -> (the socket's recvfrom, the leg's handler for its datagrams)
        self._readers: dict[
            int, tuple[Callable[[int], tuple[bytes, Address]], Callable[[bytes, Address, float], None]]
        ] = {}
        self._watched: asyncio.AbstractEventLoop | None = None  # the loop that watches the poller
        self._layout: TickLayout | None = None  # None: rebuilt at the next tick
        self._task: asyncio.Task[None] | None = None
        self._ticks = self._late = self._skipped = 0
        self._max_late = 0.0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="media-engine-tick")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for leg_id in list(self._legs):
            self.close_leg(leg_id)
        self._confs.clear()
        self._member_of.clear()
        self._library.prune(set())
        self._library.close()
        if self._poller is not None:
            if self._watched is not None:
                self._watched.remove_reader(self._poller.fileno())
                self._watched = None
            self._poller.close()
            self._poller = None

    @property
    def stats(self) -> dict[str, int | float]:
        c = self._counters
        return {
            "ticks": self._ticks,
            "late_ticks": self._late,
            "skipped_ticks": self._skipped,
            "max_lateness_ms": round(self._max_late * 1000, 3),
            "legs": len(self._legs),
            "conferences": len(self._confs),
            "packets_in": c.packets_in,
            "packets_out": c.packets_out,
            "malformed_in": c.malformed_in,
            "rtcp_in": c.rtcp_in,
            "ignored_in": c.ignored_in,
            "send_dropped": c.send_dropped,
            "open_sockets": c.open_sockets,
            "free_ports": self._pool.free,
            "media_loading": self._library.loading,
            "media_decodes": self._library.cache.decodes,
            "media_cache_bytes": self._library.cache.size,
            "rtp_refused_foreign_source": c.rtp_refused_foreign_source,
            "dtmf_refused_foreign_source": c.dtmf_refused_foreign_source,
            "rtcp_refused_foreign_source": c.rtcp_refused_foreign_source,
            "relatched": c.relatched,
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
        existing = self._legs.get(leg_id)
        if existing is not None:
            return existing.port
        port, rtp_sock, rtcp_sock = self._pool.bind_pair()
        if self._poller is None:
            self._poller = select.epoll()
            self._watch_poller()
        leg = RtpLeg(leg_id, port, rtp_sock, rtcp_sock, self._counters, self._dtmf_received, self.latch)
        for sock, handler in ((rtp_sock, leg.rtp_received), (rtcp_sock, leg.rtcp_received)):
            self._poller.register(sock.fileno(), select.EPOLLIN)
            self._readers[sock.fileno()] = (sock.recvfrom, handler)
        self._legs[leg_id] = leg
        self._layout = None
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
    ) -> None:
        """Start media after SDP negotiation (ValueError for a non-G.711 payload type or odd ptime)."""
        now = asyncio.get_running_loop().time()  # the receive path's clock: starts the learning window
        self._leg(leg_id).connect(remote, payload_type, telephone_event_pt, send, ptime_ms, now)
        self._layout = None  # the payload type picks the batch's encodings

    def update_leg(self, leg_id: str, *, remote: Address | None = None, send: bool | None = None) -> None:
        """Apply a peer re-INVITE: new address and/or direction (send=False: hold, send nothing).
        A new address reopens the leg's source learning."""
        self._leg(leg_id).update(remote, send, asyncio.get_running_loop().time())

    def close_leg(self, leg_id: str) -> None:
        """Close the leg's sockets and cancel its message (without on_finished). Idempotent."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._forget(leg)

    def _forget(self, leg: RtpLeg) -> None:
        self._layout = None
        self._messages.pop(leg.leg_id, None)
        if self._legs.get(leg.leg_id) is leg:
            del self._legs[leg.leg_id]
        if not leg.closed:
            for sock in (leg.rtp_sock, leg.rtcp_sock):
                fd = sock.fileno()
                del self._readers[fd]
                if self._poller is not None:
                    self._poller.unregister(fd)
            leg.close()
            self._pool.release(leg.port)
        cid = self._member_of.get(leg.leg_id)
        if cid is not None:
            self._leave(cid, {leg.leg_id})

    def _leg(self, leg_id: str) -> RtpLeg:
        leg = self._legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(leg_id)
        return leg

    # ------------------------------------------------------------------ routing, messages, DTMF
    def set_routes(self, conference_id: str, legs: Sequence[LegAudio], music: MusicSources) -> None:
        """Replace the conference's routing. Legs left out leave it; legs moved here leave their old one.

        Route entries naming legs outside this conference are ignored. Leg ids not opened yet are
        accepted (they are silent until opened and connected)."""
        self._layout = None
        new = {la.leg_id: la for la in legs}  # one entry per leg: the last wins
        old = self._confs.get(conference_id)
        heard_before = _music_heard(old)
        if old is not None:
            for la in old.legs:
                if la.leg_id not in new and self._member_of.get(la.leg_id) == conference_id:
                    del self._member_of[la.leg_id]
        for leg_id in new:
            previous = self._member_of.get(leg_id)
            if previous is not None and previous != conference_id:
                self._leave(previous, {leg_id})
        if not new:
            self._confs.pop(conference_id, None)
        else:
            conf = old if old is not None else ConferenceMix(conference_id)
            self._confs[conference_id] = conf
            for leg_id in new:
                self._member_of[leg_id] = conference_id
            conf.configure(tuple(new.values()), music, self._library)
            for leg_id, (setting, spec) in _music_heard(conf).items():  # newly hearing a failed source
                reason = self._library.failure(spec)
                if reason is not None and heard_before.get(leg_id) != (setting, spec):
                    self._report_media_failed(leg_id, setting, reason)
        self._library.prune({s for c in self._confs.values() for s in c.music_specs})

    def _leave(self, conference_id: str, leg_ids: set[str]) -> None:
        self._layout = None
        conf = self._confs[conference_id]
        for leg_id in leg_ids:
            self._member_of.pop(leg_id, None)
        remaining = tuple(la for la in conf.legs if la.leg_id not in leg_ids)
        if remaining:
            conf.configure(remaining, conf.music, self._library)
        else:
            del self._confs[conference_id]

    def play(self, leg_id: str, media: str | None, on_finished: Callable[[], None]) -> None:
        """Play a message once into the leg instead of its routes; on_finished runs from the tick after
        its last frame. media: a tone spec (2 s), a WAV path, or None / unusable -> built-in beeps.
        A new play() replaces a running one, whose on_finished is then never called."""
        leg = self._leg(leg_id)
        leg.message = self._library.message(media)
        leg.on_finished = on_finished
        if media:
            self._messages[leg_id] = (media, leg.message)

    def on_media_failed(self, callback: Callable[[str, str, str], None]) -> None:
        """Register the callback for a music or message source that could not be used and plays the
        default instead: callback(leg_id, setting name, reason), once per leg hearing it."""
        self._media_failed = callback

    def _media_failures(self) -> None:
        """Swap in sources that finished loading; report the failed ones to the legs that hear them."""
        for spec, reason in self._library.poll():
            for conf in self._confs.values():
                for leg_id, (setting, heard) in _music_heard(conf).items():
                    if heard == spec:
                        self._report_media_failed(leg_id, setting, reason)
            for leg_id, (message_spec, source) in list(self._messages.items()):
                leg = self._legs.get(leg_id)
                if message_spec == spec and leg is not None and leg.message is source:
                    self._report_media_failed(leg_id, SETTING_FOR[Music.VOICEMAIL], reason)

    def _report_media_failed(self, leg_id: str, setting: str, reason: str) -> None:
        if self._media_failed is not None:
            try:
                self._media_failed(leg_id, setting, reason)
            except Exception:  # a callback bug must not break the tick
                log.exception("media.failure_callback_failed", leg_id=leg_id)

    def on_dtmf(self, callback: Callable[[str, str], None]) -> None:
        """Register the callback for received DTMF digits: callback(leg_id, digit)."""
        self._dtmf_callback = callback

    def _dtmf_received(self, leg_id: str, digit: str) -> None:
        self._digits.append((leg_id, digit))

    def _dispatch_dtmf(self) -> None:
        digits, self._digits = self._digits, []
        for leg_id, digit in digits:
            if leg_id not in self._legs:
                continue  # closed by an earlier digit's callback
            self._relay_dtmf(leg_id, digit)
            if self._dtmf_callback is not None:
                try:
                    self._dtmf_callback(leg_id, digit)
                except Exception:  # a callback bug must not break the tick
                    log.exception("media.dtmf_callback_failed", leg_id=leg_id)

    def _relay_dtmf(self, leg_id: str, digit: str) -> None:
        """Re-send a digit to every leg that hears its sender: DTMF follows the audio routes, so a
        held member's digits reach nobody and a private consultation keeps its digits private."""
        conf = self._confs.get(self._member_of.get(leg_id, ""))
        if conf is None:
            return
        for la in conf.legs:
            if leg_id in la.hears and la.leg_id != leg_id and la.music is None:
                listener = self._legs.get(la.leg_id)
                if listener is not None:
                    listener.queue_dtmf(digit)

    # ------------------------------------------------------------------ the tick
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self._period
        start = loop.time()
        n = 0
        while True:
            deadline = start + n * period
            delay = deadline - loop.time()
            # Always yield, even when late, so receive callbacks are never starved by catch-up ticks.
            await asyncio.sleep(max(delay, 0))
            lateness = loop.time() - deadline
            if lateness > LATE_S:
                self._late += 1
            self._max_late = max(self._max_late, lateness)
            if lateness > MAX_BEHIND_TICKS * period:
                # A long stall (GC, blocking call): bursting the missed ticks would only flood the
                # peers; skip them, and the jitter buffers drop what piled up meanwhile.
                behind = int(lateness // period)
                n += behind
                self._skipped += behind
            self._ticks += 1
            try:
                self._receive(loop.time())
                self._dispatch_dtmf()  # before the mix: its callbacks may open, close or re-route legs
                self._media_failures()  # loaded sources start playing with this tick
                self._tick(n)
            except Exception:
                log.exception("media.tick_failed", tick=n)
            n += 1

    def _watch_poller(self) -> None:
        """Also drain between ticks, whenever the event loop sees a datagram waiting: the work then
        comes in many short bursts, as a packet relay's does, instead of one long burst per tick,
        which a busy machine's scheduler delays more (measured: late ticks at 200 legs). Each
        wake-up still reads every ready socket in one batch."""
        assert self._poller is not None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opened outside the loop: the tick alone receives
            return
        loop.add_reader(self._poller.fileno(), self._drain, loop)
        self._watched = loop

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._receive(loop.time())
            self._dispatch_dtmf()
        except Exception:
            log.exception("media.receive_failed")

    def _receive(self, now: float) -> None:
        """Read what arrived since the last tick: a round reads one datagram from each socket that
        poll(0) reports readable, and rounds repeat until none is (a second packet in one tick is
        rare, so one cheap poll beats a failing recvfrom per socket)."""
        poller = self._poller
        if poller is None:
            return
        readers = self._readers
        for _ in range(MAX_RECEIVE_ROUNDS):
            ready = poller.poll(0)
            if not ready:
                return
            for fd, _ in ready:
                recvfrom, handler = readers[fd]
                try:
                    data, addr = recvfrom(_DATAGRAM_MAX)
                except OSError:  # nothing after all, or an ICMP error queued on the socket
                    continue
                handler(data, addr, now)

    def _tick(self, n: int) -> None:
        layout = self._layout
        if layout is None:
            layout = self._layout = build_layout(self._confs.values(), self._legs, self._member_of)
        finished = run_tick(layout, self._legs, n)
        # Callbacks last: they may open, close or re-route legs, which must not happen mid-iteration.
        for callback in finished:
            try:
                callback()
            except Exception:
                log.exception("media.on_finished_failed")


def _music_heard(conf: ConferenceMix | None) -> dict[str, tuple[str, str]]:
    """leg id -> (setting, spec) of the music each leg of the conference hears."""
    if conf is None:
        return {}
    return {
        la.leg_id: (SETTING_FOR[la.music], spec_for(la.music, conf.music))
        for la in conf.legs
        if la.music is not None
    }
