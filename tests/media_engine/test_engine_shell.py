"""The engine shell on real UDP sockets: the media thread carries audio, DTMF and messages between
sockets and the event loop, never waits for the event loop, and leaves no socket, port or thread
behind. What the audio is made of (routes, latching, jitter) is tested on the pure runtime in
tests/media/test_runtime_*.py; here only what the sockets, the thread and the callbacks add."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from media_peer import dominant_freq, join, level_at, peak_freqs, peers, port_range, until

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, MediaPortsExhausted, UnknownLeg
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media import g711
from bridgeline.media.dtmf import TelephoneEvent, dtmf_packets

PCMU, PCMA = g711.PCMU, g711.PCMA
RTCP_RR = bytes([0x81, 201, 0x00, 0x01]) + (0x1234).to_bytes(4, "big")  # receiver report, one block-less
TWO_WAY = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)]


def write_tone_wav(path: Path, freq: float, seconds: float) -> None:
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm.tobytes())


def media_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "media-tick"]


async def test_two_legs_hear_each_other_across_codecs(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMA)) as (a, b):
        join(engine, "a", a)
        join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        await a.listen(15)  # the jitter buffers fill
        mark = await a.listen(25)
        assert {r.packet.payload_type for r in a.received} == {PCMU}
        assert {r.packet.payload_type for r in b.received} == {PCMA}
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert all(r.source[1] == engine.open_leg("a") for r in a.received)  # sent from the leg's port
        assert engine.stats["packets_in"] > 0 and engine.stats["packets_out"] > 0


async def test_unset_music_plays_the_default_of_its_kind(engine: MediaEngine) -> None:
    """The shell resolves MusicSources into sources for the runtime: unset settings, the defaults."""
    async with peers((None, PCMU), (None, PCMU)) as (a, b):
        join(engine, "a", a)
        join(engine, "b", b)
        legs = [LegAudio("a", (), Music.AGENT_HOLD), LegAudio("b", (), Music.WAIT)]
        engine.set_routes("c1", legs, MusicSources())
        await a.listen(10)
        mark = await a.listen(25)
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([350, 440], abs=4)


async def test_the_tick_never_waits_for_the_event_loop(engine: MediaEngine) -> None:
    """Issue #10 item 2: with the event loop blocked (a long request handler, a slow callback), the
    media thread goes on sending a packet per tick and skips none. On the asyncio engine this waited
    in vain: the tick ran on the blocked loop."""
    async with peers((None, PCMU)) as (a,):
        join(engine, "a", a)
        await a.listen(5)
        before = engine.stats
        deadline = time.monotonic() + 5.0
        # Block the loop (no await) until the engine has sent 25 more packets, or the deadline.
        while engine.stats["packets_out"] < before["packets_out"] + 25 and time.monotonic() < deadline:
            pass
        after = engine.stats
        assert after["packets_out"] >= before["packets_out"] + 25
        assert after["skipped_ticks"] == before["skipped_ticks"]
        await a.listen(25)  # and every one of them arrived
        assert a.count_since(0) >= 5 + 25


async def test_dtmf_reaches_the_callback_on_the_event_loop_and_is_relayed(engine: MediaEngine) -> None:
    got: list[tuple[str, str, bool]] = []
    loop_thread = threading.get_ident()
    engine.on_dtmf(lambda leg, digit: got.append((leg, digit, threading.get_ident() == loop_thread)))
    async with peers((440, PCMU), (None, PCMU)) as (a, b):
        port_a = join(engine, "a", a)
        join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        await a.listen(5)
        for _, packet in dtmf_packets("7", ssrc=a.ssrc, sequence=a.seq, timestamp=77_000, payload_type=101):
            a.send_packet(packet, ("127.0.0.1", port_a))
        assert await until(
            lambda: any(r.packet.payload_type == 101 and r.packet.payload[1] & 0x80 for r in b.received)
        )
        assert got == [("a", "7", True)]
        events = [TelephoneEvent.parse(r.packet.payload) for r in b.received if r.packet.payload_type == 101]
        assert {e.event for e in events} == {7}


async def test_play_calls_on_finished_once_on_the_event_loop(engine: MediaEngine, tmp_path: Path) -> None:
    write_tone_wav(tmp_path / "vm.wav", 1000, 0.3)  # the engine's media dir is tmp_path
    finished: list[str] = []
    done = asyncio.Event()
    async with peers((440, PCMU), (880, PCMU)) as (a, b):
        join(engine, "a", a)
        join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        await a.listen(10)
        engine.play("a", "tone:700", lambda: finished.append("replaced"))  # replaced at once: never ends
        mark = asyncio.get_running_loop().time()
        engine.play("a", "vm.wav", lambda: (finished.append("vm"), done.set()))
        await asyncio.wait_for(done.wait(), 5)
        during = a.pcm_since(mark)
        assert dominant_freq(during) == pytest.approx(1000, abs=4)  # the message, loaded off the loop
        assert level_at(b.pcm_since(mark), 1000) < 0.02  # b does not hear it
        await a.listen(10)
        assert finished == ["vm"]
        engine.play("b", None, lambda: finished.append("b"))
        engine.close_leg("b")  # closed while playing: no on_finished
        await a.listen(60)  # longer than the beeps
        assert finished == ["vm"]
        with pytest.raises(UnknownLeg):
            engine.play("b", None, lambda: None)


async def test_callback_errors_do_not_stop_the_media(engine: MediaEngine) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("callback bug")

    engine.on_dtmf(boom)
    ended = asyncio.Event()
    async with peers((None, PCMU)) as (a,):
        port = join(engine, "a", a)
        await a.listen(3)
        engine.play("a", "vm.wav", boom)  # not in the media dir: the built-in beeps (1 s), then boom
        for _, packet in dtmf_packets("9", ssrc=a.ssrc, sequence=a.seq, timestamp=1, payload_type=101):
            a.send_packet(packet, ("127.0.0.1", port))
        await a.listen(60)
        engine.play("a", None, ended.set)  # callbacks still run after the failed ones
        await asyncio.wait_for(ended.wait(), 5)
        await a.listen(5)


async def test_malformed_datagrams_and_rtcp_on_either_port_are_counted(engine: MediaEngine) -> None:
    rng = random.Random(7)
    garbage = [bytes([rng.randrange(0, 64)]) + rng.randbytes(rng.randrange(0, 200)) for _ in range(30)]
    async with peers((None, PCMU)) as (a,):
        port = join(engine, "a", a)
        await a.listen(3)
        for data in garbage:
            a.send_raw(data, ("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:  # asyncio skips empty datagrams
            raw.sendto(b"", ("127.0.0.1", port))
        a.send_raw(RTCP_RR, ("127.0.0.1", port))  # rtcp-mux style, on the RTP port
        a.send_raw(RTCP_RR, ("127.0.0.1", port + 1))
        a.send_raw(RTCP_RR + b"\x81", ("127.0.0.1", port + 1))  # trailing byte: malformed
        assert await until(lambda: engine.stats["malformed_in"] == len(garbage) + 2)
        assert await until(lambda: engine.stats["rtcp_in"] == 2)


async def test_a_flooded_port_does_not_starve_the_others(engine: MediaEngine) -> None:
    """Each wake-up reads a bounded number of datagrams per socket, so junk poured on one leg's port
    neither stalls the tick nor keeps the other legs' audio from being read."""
    async with peers((440, PCMU), (880, PCMU), (None, PCMU)) as (a, b, flooder):
        port_a = join(engine, "a", a)
        join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        junk = bytes([0x40, 0]) + bytes(170)  # RTP version 1: malformed, so it latches nothing

        def flood() -> None:  # 60 junk datagrams per tick, far beyond one wake-up's rounds
            for _ in range(60):
                flooder.send_raw(junk, ("127.0.0.1", port_a))

        b.on_packet = flood
        await a.listen(15)
        mark = await a.listen(20)
        b.on_packet = None
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert engine.stats["malformed_in"] > 100 and engine.stats["skipped_ticks"] == 0


async def test_unknown_legs_and_bad_parameters_fail_at_once(engine: MediaEngine) -> None:
    with pytest.raises(UnknownLeg):
        engine.connect_leg("x", remote=("127.0.0.1", 9), payload_type=0, telephone_event_pt=None, send=True)
    with pytest.raises(UnknownLeg):
        engine.update_leg("x", send=False)
    engine.close_leg("x")  # idempotent, also for legs never opened
    port = engine.open_leg("x")
    assert port % 2 == 0 and engine.open_leg("x") == port
    with pytest.raises(ValueError):
        engine.connect_leg("x", remote=("127.0.0.1", 9), payload_type=18, telephone_event_pt=None, send=True)
    with pytest.raises(ValueError):
        engine.connect_leg(
            "x", remote=("127.0.0.1", 9), payload_type=0, telephone_event_pt=None, send=True, ptime_ms=25
        )
    # Routes may name legs that are not open (yet): they are silent, nothing breaks.
    engine.set_routes(
        "c1", [LegAudio("x", ("ghost",), None), LegAudio("ghost", ("x",), Music.WAIT)], MusicSources()
    )
    engine.close_leg("x")
    engine.close_leg("x")
    engine.set_routes("c1", [], MusicSources())
    assert engine.stats["conferences"] == 0 and engine.stats["legs"] == 0


async def test_close_frees_sockets_and_port_within_a_tick(engine: MediaEngine) -> None:
    async with peers((None, PCMU)) as (heartbeat,):  # its packets wake `until`
        join(engine, "hb", heartbeat)
        port = engine.open_leg("x")
        assert engine.stats["open_sockets"] == 4
        engine.close_leg("x")
        assert engine.stats["legs"] == 1  # at once for the caller
        assert await until(lambda: engine.stats["open_sockets"] == 2)  # the media thread closed them
        assert engine.stats["free_ports"] == engine.port_capacity - 1
    for p in (port, port + 1):  # the OS agrees
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", p))


async def test_ports_exhausted_before_start() -> None:
    low, _ = port_range(4)
    engine = MediaEngine(port_min=low, port_max=low + 3)  # two RTP/RTCP pairs; not started
    try:
        ports = [engine.open_leg("a"), engine.open_leg("b")]
        assert sorted(ports) == [low, low + 2]
        with pytest.raises(MediaPortsExhausted):
            engine.open_leg("c")
        engine.close_leg("a")  # no media thread yet: applied at once
        assert engine.stats["free_ports"] == 1
        assert engine.open_leg("c") == low
    finally:
        await engine.stop()
    assert engine.stats["open_sockets"] == 0


async def test_200_legs_opened_and_closed_leave_nothing_behind() -> None:
    low, high = port_range(420)
    engine = MediaEngine(port_min=low, port_max=high)
    await engine.start()
    try:
        async with peers((440, PCMU)) as (peer,):
            ids = [f"leg{i}" for i in range(200)]
            ports = [engine.open_leg(leg) for leg in ids]
            assert engine.stats["open_sockets"] == 400 and len(set(ports)) == 200
            for leg, port in zip(ids, ports, strict=True):
                engine.connect_leg(
                    leg, remote=peer.address, payload_type=PCMU, telephone_event_pt=101, send=True
                )
                peer.send_packet(peer.next_audio_packet(), ("127.0.0.1", port))
            for i in range(0, 200, 10):  # 20 ten-party conferences, some legs held, some playing
                members = ids[i : i + 10]
                routes = [LegAudio(m, tuple(x for x in members if x != m), None) for m in members[1:]]
                engine.set_routes(
                    f"c{i}", [LegAudio(members[0], (), Music.CUSTOMER_HOLD), *routes], MusicSources()
                )
                engine.play(members[1], None, lambda: None)
            await peer.listen(1000)  # five ticks' worth
            for leg in ids:
                engine.close_leg(leg)
            assert engine.stats["legs"] == 0 and engine.stats["conferences"] == 0
    finally:
        await engine.stop()
    assert not media_threads()
    assert engine.stats["open_sockets"] == 0 and engine.stats["free_ports"] == engine.port_capacity
    for port in ports:  # the OS agrees: every RTP and RTCP port can be bound again
        for p in (port, port + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", p))


async def test_stop_joins_the_thread_and_closes_open_legs_and_start_works_again() -> None:
    low, high = port_range(20)
    engine = MediaEngine(port_min=low, port_max=high)
    await engine.start()
    assert len(media_threads()) == 1
    for i in range(5):
        engine.open_leg(f"l{i}")
    await engine.stop()
    assert not media_threads()
    assert engine.stats["open_sockets"] == 0 and engine.stats["legs"] == 0
    assert engine.stats["free_ports"] == engine.port_capacity
    await engine.start()  # a stopped engine starts again
    try:
        async with peers((None, PCMU)) as (a,):
            join(engine, "again", a)
            await a.listen(3)
    finally:
        await engine.stop()
    assert not media_threads() and engine.stats["open_sockets"] == 0


def _fifo_allowed() -> bool:
    """Whether this process may put a thread under SCHED_FIFO (root, CAP_SYS_NICE or RLIMIT_RTPRIO)."""
    granted: list[bool] = []

    def probe() -> None:  # asks the kernel itself, not the code under test
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            granted.append(False)
        else:
            granted.append(True)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return granted[0]


@pytest.mark.parametrize("priority", [10, 0])
async def test_the_media_thread_runs_real_time_when_asked_and_allowed(priority: int) -> None:
    """What the thread asked for and what the OS granted, seen by the kernel (CI runs as root:
    granted there); 0 asks for nothing."""
    low, high = port_range(4)
    engine = MediaEngine(port_min=low, port_max=high, realtime_priority=priority)
    await engine.start()
    try:
        (thread,) = media_threads()
        assert thread.native_id is not None
        granted = priority > 0 and _fifo_allowed()
        policy = os.sched_getscheduler(thread.native_id)
        assert policy == (os.SCHED_FIFO if granted else os.SCHED_OTHER)
        assert os.sched_getparam(thread.native_id).sched_priority == (priority if granted else 0)
        assert engine.stats["realtime"] == int(granted)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the event loop's thread is left alone
    finally:
        await engine.stop()


UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
REFUSED = """
import asyncio
from bridgeline.adapters.carriers.sip.media_engine import MediaEngine

async def main():
    engine = MediaEngine(port_min=%d, port_max=%d, realtime_priority=10)
    await engine.start()
    print("realtime", engine.stats["realtime"], flush=True)
    await engine.stop()

asyncio.run(main())
"""


def test_without_the_privilege_the_media_thread_says_so_and_runs_normally() -> None:
    """An unprivileged user with no RLIMIT_RTPRIO (the usual container): refused, logged, still ticking."""
    if not shutil.which("setpriv") or os.geteuid() != 0:
        pytest.fail("needs root and util-linux's setpriv to drop to an unprivileged user (CI has both)")
    low, high = port_range(4)
    done = subprocess.run(
        [*UNPRIVILEGED, sys.executable, "-c", REFUSED % (low, high)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "realtime 0" in done.stdout
    assert "media_thread_not_realtime" in done.stdout + done.stderr
