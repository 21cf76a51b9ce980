"""The asyncio media engine: RTP legs, per-conference mixing on a 20 ms tick, music and messages.

One task ticks every 20 ms on absolute deadlines (start + n * 20 ms), so scheduling jitter never
accumulates into drift. Each tick, per conference: pull one frame per leg from its jitter buffer,
write music frames, mix by the routes, encode per codec and send one tick of RTP to every leg that
wants media. Receiving is batched: every leg's sockets sit in one epoll, which the event loop
watches; on a wake-up, and again at the start of each tick, one poll(0) tells which sockets have
datagrams waiting and those are read with plain recvfrom calls. No event-loop callback per datagram:
that cost more than all the media work at a few hundred legs.

Routing comes from the conference core as `LegAudio` (who hears whom, plus a music kind). A leg
hears only legs of its own conference; a leg in no conference, or with an empty route, hears
silence (RTP keeps flowing, which keeps NAT bindings and the peer's jitter buffer alive). A message
started with `play` replaces whatever the leg would hear until it has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import structlog
from numpy.typing import NDArray

from bridgeline.adapters.music import DEFAULT_SPECS, SILENCE, MusicLibrary, spec_for
from bridgeline.adapters.rtp_udp import Address, Counters, MediaPortsExhausted, PortPool, RtpLeg
from bridgeline.core.effects import LegAudio
from bridgeline.media import g711
from bridgeline.media.batch_mix import MixMinusBatch, encode_rows
from bridgeline.media.jitter import FRAME_SAMPLES, Frame, decode_frame
from bridgeline.media.mixer import Mixer
from bridgeline.media.player import SharedSource
from bridgeline.phlo.definition import NodeSettings

__all__ = ["MediaEngine", "MediaPortsExhausted", "UnknownLeg"]

log = structlog.get_logger(__name__)

LATE_S: Final = 0.005  # a tick starting more than 5 ms after its deadline counts as late
MAX_BEHIND_TICKS: Final = 3  # further behind than this: skip the missed ticks instead of bursting
# Receive rounds per tick: each round reads one datagram from every socket that has one, so a leg
# gets at most this many per tick (a flood on one port cannot starve the others or the tick).
MAX_RECEIVE_ROUNDS: Final = 8
_DATAGRAM_MAX: Final = 2048  # larger than any G.711 packet up to 120 ms; longer datagrams are cut
_MUSIC_KEY: Final = "\x00music:"  # mixer keys for music; leg ids never start with NUL
_SILENT_FRAME = np.zeros(160, dtype=np.int16)
_SILENT_CODES: Final = {pt: g711.encode_array(pt, _SILENT_FRAME).tobytes() for pt in (g711.PCMU, g711.PCMA)}


class UnknownLeg(KeyError):
    """The leg id was never opened, or has been closed."""


class _Conference:
    """One conference's mixer and the row bookkeeping compiled from its routes."""

    def __init__(self, conference_id: str) -> None:
        self.id = conference_id
        self.mixer: Mixer[str] = Mixer()
        self.legs: tuple[LegAudio, ...] = ()
        self.settings = NodeSettings()
        self.leg_rows: list[tuple[str, int]] = []  # leg id, mixer input row
        self.music_rows: list[tuple[SharedSource, int]] = []
        self.outputs: list[tuple[str, int | None]] = []  # leg id, mixer output row (None: silence)
        # When every leg hears at most one source (two-party calls, hold, waiting alone), the mixer
        # is skipped: leg id -> the one leg id or music source it hears, or None for silence.
        self.direct: list[tuple[str, str | SharedSource | None]] | None = None
        # Everyone hears everyone else, no music (3 members or more): mixed with the other plain
        # conferences of the same size in one batch, not by its own mixer.
        self.plain = False
        self.music_specs: set[str] = set()


class _Batch:
    """Plain conferences of one size, mixed together; rows follow the conferences' leg order."""

    def __init__(self, confs: list[_Conference], legs: dict[str, RtpLeg]) -> None:
        self.legs = [legs.get(la.leg_id) for conf in confs for la in conf.legs]
        self.mixer = MixMinusBatch(len(confs), len(confs[0].legs))
        pts = Counter(leg.payload_type for leg in self.legs if leg is not None)
        self.pts = sorted(pts)  # the listeners' codecs: the whole mix is encoded once per codec
        # The codec most rows arrive in: their codes are decoded in one lookup, the rest row by row.
        self.pt = pts.most_common(1)[0][0] if pts else g711.PCMU


class _Layout:
    """What the tick walks, compiled from the conferences and legs whenever either changes, so that
    the per-tick loops touch legs directly instead of looking them up by id."""

    def __init__(self) -> None:
        self.pulled: list[RtpLeg | None] = []  # every leg of a direct conference, pulled each tick
        # Per listener of a direct conference: what it hears (an index into pulled, music, or None).
        self.direct: list[tuple[RtpLeg, int | SharedSource | None]] = []
        self.batches: list[_Batch] = []
        self.mixed: list[_Conference] = []  # conferences with their own mixer
        self.loose: list[RtpLeg] = []  # legs in no conference


class MediaEngine:
    """See the module docstring. Every method runs on the event loop's thread."""

    def __init__(
        self, *, host: str = "127.0.0.1", port_min: int = 20000, port_max: int = 20999, ptime_ms: int = 20
    ) -> None:
        if ptime_ms != 20:
            raise ValueError("the media layer mixes 20 ms frames: ptime_ms must be 20")
        self.host = host
        self._period = ptime_ms / 1000
        self._pool = PortPool(host, port_min, port_max)
        self._counters = Counters()
        self._library = MusicLibrary()
        self._legs: dict[str, RtpLeg] = {}
        self._confs: dict[str, _Conference] = {}
        self._member_of: dict[str, str] = {}  # leg id -> conference id
        self._dtmf_callback: Callable[[str, str], None] | None = None
        self._digits: list[tuple[str, str]] = []  # received this tick, dispatched after the receive
        self._poller: select.epoll | None = None  # every open leg's two sockets, created on demand
        # fd -> (the socket's recvfrom, the leg's handler for its datagrams)
        self._readers: dict[
            int, tuple[Callable[[int], tuple[bytes, Address]], Callable[[bytes, Address, float], None]]
        ] = {}
        self._watched: asyncio.AbstractEventLoop | None = None  # the loop that watches the poller
        self._layout: _Layout | None = None  # None: rebuilt at the next tick
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
        }

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
        leg = RtpLeg(leg_id, port, rtp_sock, rtcp_sock, self._counters, self._dtmf_received)
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
        self._leg(leg_id).connect(remote, payload_type, telephone_event_pt, send, ptime_ms)
        self._layout = None  # the payload type picks the batch's encodings

    def update_leg(self, leg_id: str, *, remote: Address | None = None, send: bool | None = None) -> None:
        """Apply a peer re-INVITE: new address and/or direction (send=False: hold, send nothing)."""
        self._leg(leg_id).update(remote, send)

    def close_leg(self, leg_id: str) -> None:
        """Close the leg's sockets and cancel its message (without on_finished). Idempotent."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            self._forget(leg)

    def _forget(self, leg: RtpLeg) -> None:
        self._layout = None
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
    def set_routes(self, conference_id: str, legs: Sequence[LegAudio], settings: NodeSettings) -> None:
        """Replace the conference's routing. Legs left out leave it; legs moved here leave their old one.

        Route entries naming legs outside this conference are ignored. Leg ids not opened yet are
        accepted (they are silent until opened and connected)."""
        self._layout = None
        new = {la.leg_id: la for la in legs}  # one entry per leg: the last wins
        old = self._confs.get(conference_id)
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
            conf = old if old is not None else _Conference(conference_id)
            self._confs[conference_id] = conf
            for leg_id in new:
                self._member_of[leg_id] = conference_id
            self._configure(conf, tuple(new.values()), settings)
        self._library.prune({s for c in self._confs.values() for s in c.music_specs})

    def _leave(self, conference_id: str, leg_ids: set[str]) -> None:
        self._layout = None
        conf = self._confs[conference_id]
        for leg_id in leg_ids:
            self._member_of.pop(leg_id, None)
        remaining = tuple(la for la in conf.legs if la.leg_id not in leg_ids)
        if remaining:
            self._configure(conf, remaining, conf.settings)
        else:
            del self._confs[conference_id]

    def _configure(self, conf: _Conference, legs: tuple[LegAudio, ...], settings: NodeSettings) -> None:
        conf.legs, conf.settings = legs, settings
        members = {la.leg_id for la in legs}
        routes: dict[str, set[str]] = {}
        music: dict[str, SharedSource] = {}
        conf.music_specs = set()
        for la in legs:
            heard = {h for h in la.hears if h in members and h != la.leg_id}  # never across conferences
            if la.music is not None:
                spec = spec_for(la.music, settings)
                if spec != SILENCE:
                    key = _MUSIC_KEY + spec
                    music[key] = self._library.music(spec, DEFAULT_SPECS[la.music])
                    conf.music_specs.add(spec)
                    heard.add(key)
            routes[la.leg_id] = heard
        conf.plain = not music and len(routes) > 2 and all(len(h) == len(routes) - 1 for h in routes.values())
        if conf.plain or all(len(heard) <= 1 for heard in routes.values()):
            conf.direct = (
                None
                if conf.plain
                else [
                    (leg_id, next((music.get(h, h) for h in heard), None)) for leg_id, heard in routes.items()
                ]
            )
            conf.leg_rows = [(la.leg_id, -1) for la in legs]
            conf.music_rows, conf.outputs = [], []
            conf.mixer.configure((), {})  # drop the previous routing's buffers
            return
        conf.direct = None
        mixer = conf.mixer
        mixer.configure([la.leg_id for la in legs] + list(music), routes)
        mixer.inputs.fill(0)
        conf.leg_rows = [(la.leg_id, mixer.source_row[la.leg_id]) for la in legs]
        conf.music_rows = [(src, mixer.source_row[key]) for key, src in music.items()]
        conf.outputs = [(la.leg_id, mixer.output_row.get(la.leg_id)) for la in legs]

    def play(self, leg_id: str, media: str | None, on_finished: Callable[[], None]) -> None:
        """Play a message once into the leg instead of its routes; on_finished runs from the tick after
        its last frame. media: a tone spec (2 s), a WAV path, or None / unusable -> built-in beeps.
        A new play() replaces a running one, whose on_finished is then never called."""
        leg = self._leg(leg_id)
        leg.message = self._library.message(media)
        leg.on_finished = on_finished

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
        layout = self._layout or self._build_layout()
        finished: list[Callable[[], None]] = []
        self._tick_direct(layout, n, finished)
        for batch in layout.batches:
            self._tick_batch(batch, finished)
        for conf in layout.mixed:
            self._tick_mixed(conf, n, finished)
        for leg in layout.loose:
            if leg.connected:
                leg.jitter.pop_frame()  # keep its playout clock running; nobody hears it
            if leg.message is not None:
                self._send_message(leg, finished)
            else:
                leg.send_tick(_SILENT_CODES[leg.payload_type])
        # Callbacks last: they may open, close or re-route legs, which must not happen mid-iteration.
        for callback in finished:
            try:
                callback()
            except Exception:
                log.exception("media.on_finished_failed")

    def _build_layout(self) -> _Layout:
        legs = self._legs
        layout = _Layout()
        plain: dict[int, list[_Conference]] = {}  # by size
        for conf in self._confs.values():
            if conf.direct is not None:
                index: dict[str, int] = {}
                for leg_id, _ in conf.leg_rows:  # every leg is pulled each tick, heard or not
                    index[leg_id] = len(layout.pulled)
                    layout.pulled.append(legs.get(leg_id))
                for leg_id, source in conf.direct:
                    leg = legs.get(leg_id)
                    if leg is not None:
                        layout.direct.append((leg, index[source] if isinstance(source, str) else source))
            elif conf.plain:
                plain.setdefault(len(conf.legs), []).append(conf)
            else:
                layout.mixed.append(conf)
        layout.batches = [_Batch(confs, legs) for confs in plain.values()]
        member_of = self._member_of
        layout.loose = [leg for leg_id, leg in legs.items() if leg_id not in member_of]
        self._layout = layout
        return layout

    def _tick_direct(self, layout: _Layout, n: int, finished: list[Callable[[], None]]) -> None:
        frames = [
            leg.jitter.pop_payload() if leg is not None and leg.connected else None for leg in layout.pulled
        ]
        for leg, source in layout.direct:
            if leg.message is not None:
                self._send_message(leg, finished)
                continue
            pt = leg.payload_type
            frame: Frame | None
            if type(source) is int:
                frame = frames[source]
                if type(frame) is tuple and frame[0] == pt:
                    leg.send_tick(frame[1])  # same codec both ways: forward the codes as they came
                    continue
            elif isinstance(source, SharedSource):
                frame = source.frame_at(n)
            else:
                frame = None
            if frame is None:
                leg.send_tick(_SILENT_CODES[pt])
            else:
                leg.send_tick(g711.encode_array(pt, decode_frame(frame)).tobytes())

    def _tick_batch(self, batch: _Batch, finished: list[Callable[[], None]]) -> None:
        legs, mixer, pt = batch.legs, batch.mixer, batch.pt
        chunks: list[bytes] = []
        others: list[tuple[int, Frame | None]] = []  # rows not in codec `pt`: silent, decoded or other codec
        placeholder = _SILENT_CODES[pt]
        for row, leg in enumerate(legs):
            frame = leg.jitter.pop_payload() if leg is not None and leg.connected else None
            if type(frame) is tuple and frame[0] == pt:
                chunks.append(frame[1])
            else:
                chunks.append(placeholder)
                others.append((row, frame))
        mixer.decode_into(pt, b"".join(chunks))  # one table lookup for all the batch's rows
        if others:
            self._write_rows(mixer.inputs, others)
        out = mixer.mix()
        blobs = {code: encode_rows(code, out) for code in batch.pts}  # the whole batch, once per codec
        blob = blobs[pt] if len(blobs) == 1 else b""
        offset = 0
        for leg in legs:
            if leg is not None:
                if leg.message is not None:
                    self._send_message(leg, finished)
                else:
                    codes = blob or blobs[leg.payload_type]
                    leg.send_tick(codes[offset : offset + FRAME_SAMPLES])
            offset += FRAME_SAMPLES

    @staticmethod
    def _write_rows(inputs: NDArray[np.int16], rows: list[tuple[int, Frame | None]]) -> None:
        undecoded: dict[int, tuple[list[int], list[bytes]]] = {}  # payload type -> rows, codes
        for row, frame in rows:
            if frame is None:
                inputs[row].fill(0)
            elif type(frame) is tuple:
                rows_of, chunks = undecoded.setdefault(frame[0], ([], []))
                rows_of.append(row)
                chunks.append(frame[1])
            else:
                inputs[row] = frame
        for pt, (rows_of, chunks) in undecoded.items():  # one table lookup for all of a codec's rows
            inputs[rows_of] = g711.decode(pt, b"".join(chunks)).reshape(len(rows_of), FRAME_SAMPLES)

    def _tick_mixed(self, conf: _Conference, n: int, finished: list[Callable[[], None]]) -> None:
        legs = self._legs
        inputs = conf.mixer.inputs
        frames: list[tuple[int, Frame | None]] = []
        for leg_id, row in conf.leg_rows:
            leg = legs.get(leg_id)
            frames.append((row, leg.jitter.pop_payload() if leg is not None and leg.connected else None))
        self._write_rows(inputs, frames)
        for source, row in conf.music_rows:
            inputs[row] = source.frame_at(n)  # shared: advances once per tick engine-wide
        out = conf.mixer.mix_inputs()
        encoded: dict[int, NDArray[np.uint8]] = {}  # the whole output matrix, once per codec
        for leg_id, out_row in conf.outputs:
            leg = legs.get(leg_id)
            if leg is None:
                continue
            if leg.message is not None:
                self._send_message(leg, finished)
            elif out_row is None:
                leg.send_tick(_SILENT_CODES[leg.payload_type])
            else:
                pt = leg.payload_type
                codes = encoded.get(pt)
                if codes is None:
                    codes = encoded[pt] = g711.encode_array(pt, out)
                leg.send_tick(codes[out_row].tobytes())

    @staticmethod
    def _send_message(leg: RtpLeg, finished: list[Callable[[], None]]) -> None:
        message = leg.message
        assert message is not None
        leg.send_tick(g711.encode_array(leg.payload_type, message.next_frame()).tobytes())
        if message.finished:
            if leg.on_finished is not None:
                finished.append(leg.on_finished)
            leg.message = leg.on_finished = None
