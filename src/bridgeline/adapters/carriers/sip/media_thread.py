"""The media thread: the pure `MediaRuntime`, the legs' sockets and the 20 ms tick, in a thread of its
own with a blocking epoll loop, so the tick never waits for the event loop (issue #10 item 2).

The loop: epoll.poll(time to the next tick deadline) over every leg's two sockets and a wake-up
eventfd; whatever arrived is read with plain recvfrom calls and fed to the runtime; control commands
queued by the event loop's thread are applied; when the deadline has come the runtime ticks and its
datagrams are sent. Events (DTMF, finished messages, refusals) go back to the event loop in one
`call_soon_threadsafe` per batch.

Ownership: while the thread runs, only it touches the runtime, the poller and the sockets after
they were handed over (it also closes them, so a closed descriptor's number can never be reused
under a poll result it still holds). While it does not run (before `start`, after `stop`), the
event loop's thread applies the commands itself, in order, with the same code.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Literal

import structlog

from bridgeline.adapters.carriers.sip.rtp_udp import PortPool
from bridgeline.media.leg import Outgoing
from bridgeline.media.leg_types import Address
from bridgeline.media.runtime import Arrived, MediaEvent, MediaRuntime

log = structlog.get_logger(__name__)

# Receive rounds per wake-up: each round reads one datagram from every socket that has one, so a leg
# gets at most this many per round-trip (a flood on one port cannot starve the others or the tick).
MAX_RECEIVE_ROUNDS: Final = 8
_DATAGRAM_MAX: Final = 2048  # larger than any G.711 packet up to 120 ms; longer datagrams are cut

Command = Callable[[float], None]  # applied with the media thread's clock
_Reader = tuple[Callable[[int], tuple[bytes, Address]], str, Literal["rtp", "rtcp"]]


class MediaLoop:
    """The runtime, its sockets and the thread that drives them; see the module docstring."""

    def __init__(
        self,
        runtime: MediaRuntime,
        pool: PortPool,
        deliver: Callable[[list[MediaEvent]], None],
        *,
        realtime_priority: int = 0,
    ) -> None:
        self.runtime = runtime
        # Asked before each send, from this thread: True while the node's lease does not hold (cluster).
        self.fenced: Callable[[], bool] = _never
        # Legs closed on the event loop's thread whose close the media thread has not applied yet: sent
        # nothing (set operations are atomic under the GIL; an empty set costs one test per tick).
        self.closing: set[str] = set()
        self.send_fenced = 0
        self.realtime_priority = realtime_priority  # asked for; 0: normal scheduling
        self.realtime = False  # granted: the thread runs under SCHED_FIFO
        self._started = threading.Event()
        self._pool = pool
        self._deliver = deliver  # called on the media thread with each batch of events
        self._poller, self._wake_fd = self._open_poller()
        self._closed = False
        self._readers: dict[int, _Reader] = {}  # fd -> its recvfrom, leg id, rtp | rtcp
        self._sockets: dict[str, tuple[int, socket.socket, socket.socket]] = {}  # leg id -> port, rtp, rtcp
        self._commands: deque[Command] = deque()  # appends and pops are atomic: no lock
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.sockets_closed = 0  # counted here, opened counted by the engine: no shared += across threads
        self.send_dropped = 0
        # Called on this thread with each tick's recording frames (runtime.pop_recorded); must not block.
        self.record: Callable[[list[tuple[str, bytes]]], None] | None = None

    @staticmethod
    def _open_poller() -> tuple[select.epoll, int]:
        poller = select.epoll()
        wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        poller.register(wake_fd, select.EPOLLIN)
        return poller, wake_fd

    def _reopen(self) -> None:
        if self._closed:
            self._poller, self._wake_fd = self._open_poller()
            self._closed = False

    # ------------------------------------------------------------------ the event loop's side
    @property
    def running(self) -> bool:
        return self._thread is not None

    def submit(self, command: Command) -> None:
        """Apply `command` on the media thread (in order, at its next wake-up), or now if it is not
        running."""
        if self._thread is None:
            command(time.monotonic())
            return
        self._commands.append(command)
        os.eventfd_write(self._wake_fd, 1)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._reopen()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="media-tick", daemon=True)
        self._started.clear()
        self._thread.start()
        self._started.wait(1.0)  # its scheduling is settled (see `realtime`) before start returns

    def request_stop(self) -> None:
        """Ask the thread to end; `join` waits for it, then `stopped` hands the runtime back."""
        if self._thread is not None:
            self._stopping = True
            os.eventfd_write(self._wake_fd, 1)

    def join(self) -> None:
        """Wait for the thread to end (blocking: any thread may wait, e.g. an executor's)."""
        if self._thread is not None:
            self._thread.join()

    def stopped(self) -> None:
        """After `join`, on the event loop's thread: from now on commands are applied at once, and
        those queued after the thread's last round are applied now, in order."""
        assert self._thread is None or not self._thread.is_alive()
        self._thread = None
        self._apply_commands(time.monotonic())

    def close(self) -> None:
        """Close every socket, the poller and the wake-up fd (after stop; `start` opens them again)."""
        assert self._thread is None
        for leg_id in list(self._sockets):
            self.close_sockets(leg_id)
        if not self._closed:
            self._poller.close()
            os.close(self._wake_fd)
            self._closed = True

    # ------------------------------------------------------------------ commands' socket work
    def add_sockets(self, leg_id: str, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self._reopen()
        self._sockets[leg_id] = (port, rtp, rtcp)
        for sock, kind in ((rtp, "rtp"), (rtcp, "rtcp")):
            self._poller.register(sock.fileno(), select.EPOLLIN)
            self._readers[sock.fileno()] = (sock.recvfrom, leg_id, "rtp" if kind == "rtp" else "rtcp")

    def close_sockets(self, leg_id: str) -> None:
        entry = self._sockets.pop(leg_id, None)
        if entry is None:
            return
        port, rtp, rtcp = entry
        for sock in (rtp, rtcp):
            fd = sock.fileno()
            del self._readers[fd]
            self._poller.unregister(fd)
            sock.close()
        self.sockets_closed += 2
        self._pool.release(port)

    # ------------------------------------------------------------------ the media thread
    def _run(self) -> None:
        runtime = self.runtime
        self.realtime = claim_realtime(self.realtime_priority)
        self._started.set()
        poll = self._poller.poll
        runtime.restart_schedule(time.monotonic())
        while not self._stopping:
            try:
                # poll() rounds its timeout up to whole milliseconds: it never wakes before the deadline.
                ready = poll(max(runtime.next_tick_at - time.monotonic(), 0))
                now = time.monotonic()
                self._receive(ready, now)
                self._apply_commands(now)
                if now >= runtime.next_tick_at:
                    self._send(runtime.tick(now))
                    recorded = runtime.pop_recorded()
                    if recorded and self.record is not None:
                        self.record(recorded)
                events = runtime.pop_events()
                if events:
                    self._deliver(events)
            except Exception:  # a bug must not end the media: log it and go on with the next round
                log.exception("media.loop_failed")
        self._apply_commands(time.monotonic())

    def _apply_commands(self, now: float) -> None:
        commands = self._commands
        while commands:
            command = commands.popleft()
            try:
                command(now)
            except Exception:
                log.exception("media.command_failed")

    def _receive(self, ready: list[tuple[int, int]], now: float) -> None:
        """Read what the poll reported: a round reads one datagram from each ready socket, then hands
        them all to the runtime in one call (`receive_all`, which unprotects the round's SRTP in one
        call into libsrtp), and rounds repeat (with a poll(0)) until none is ready or
        MAX_RECEIVE_ROUNDS were read. Reading a round before handling it keeps the handling (above
        all libsrtp's code and tables) in the CPU's caches from one packet to the next, which a
        system call between them evicts: a libsrtp call after each sendto cost 2.2 us of CPU, after
        a round of them 1.0 us (docs/benchmarks.md 4b)."""
        readers, receive_all, wake_fd = self._readers, self.runtime.receive_all, self._wake_fd
        arrived: list[Arrived] = []
        for _ in range(MAX_RECEIVE_ROUNDS):
            if not ready:
                return
            for fd, _ in ready:
                reader = readers.get(fd)
                if reader is None:
                    if fd == wake_fd:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(wake_fd)
                    continue
                recvfrom, leg_id, kind = reader
                try:
                    data, addr = recvfrom(_DATAGRAM_MAX)
                except OSError:  # nothing after all, or an ICMP error queued on the socket
                    continue
                arrived.append((leg_id, kind, data, addr))
            if arrived:
                receive_all(arrived, now)  # SRTP legs' RTP unprotected in one call: media/runtime.py
                arrived.clear()
            ready = self._poller.poll(0)

    def _send(self, datagrams: list[Outgoing]) -> None:
        if datagrams and self.fenced():  # the node's lease does not hold: its calls may be another's now
            self.send_fenced += len(datagrams)
            return
        closing = self.closing
        if closing:
            datagrams = [d for d in datagrams if d[0] not in closing]
        sockets = self._sockets
        for leg_id, data, dest in datagrams:
            entry = sockets.get(leg_id)
            if entry is None:
                continue
            try:
                # Dropped, never queued, when the kernel buffer is full: stale audio is worse than lost.
                entry[1].sendto(data, dest)
            except OSError:  # BlockingIOError (buffer full), or an ICMP error reported late
                self.send_dropped += 1


def _never() -> bool:
    return False


def claim_realtime(priority: int) -> bool:
    """Put the calling thread under SCHED_FIFO at `priority` (1-99); False if 0 or the OS refuses.

    Why: when the event loop's thread is busy on the same core, the kernel lets it finish its time
    slice before running the woken media thread, so ticks came up to ~6 ms late under full API load
    (bench_tick_isolation.py); a real-time thread runs as soon as its poll returns. Its work per tick
    is small and it blocks between ticks, so it cannot starve the loop (Linux also keeps 5% of every
    second for normal threads). Asterisk (`-p`) and FreeSWITCH (`-rp`) run their media this way.
    Needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least `priority` (e.g. `ulimit -r`, or systemd's
    LimitRTPRIO=); without them the thread keeps normal scheduling and says so once.
    """
    if priority <= 0:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log.warning("media_thread_not_realtime", priority=priority, reason=exc.strerror or str(exc))
        return False
    return True
