"""CPU instructions per leg-tick of the whole media engine path, plain RTP against each SRTP suite
(not a test): the primary figure of docs/benchmarks.md 4b, load-independent.

N legs of a MediaEngine (its real UDP sockets, epoll and media loop) in 2-party conferences. A
helper process that valgrind does not trace (it is not the traced program: --trace-children=no)
protects and queues LONG ticks of packets on every leg's socket, from the address the legs were
given as their peer's, then exits. The traced process then drives the media loop itself on a
virtual clock, one tick at a time: one round of reads (a datagram from each leg's socket, handed
to the runtime: the media thread's own `_receive`, limited to one round), the tick, and the
`sendto` of what it produced (to a socket nobody reads: the kernel drops what overflows). Each
mode runs SHORT and LONG ticks; (LONG - SHORT) / extra leg-ticks leaves out interpreter start,
setup and the helper.

What it counts: every user-space instruction of the engine's process, Python, libsrtp and the C
library's side of the system calls. Not the kernel's work in recvfrom/sendto/epoll, which
callgrind cannot see and which is the same for plain and SRTP packets (a few bytes longer), so the
real ratio of legs per core lies between this figure and 100%. valgrind also hides the CPU's SHA
extensions (SHA-NI) from the program, so the AES_CM suites' HMAC-SHA1 is counted on OpenSSL's AVX2
path: natively it takes fewer instructions (see 4b).

Run: .venv/bin/python bench/srtp_engine_cost.py [--legs 400] [--suite all|<suite>[,<suite>...]] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchkit import callgrind_instructions

from bridgeline.adapters.carriers.sip import media_thread
from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, SrtpKeys
from bridgeline.core.effects import LegAudio
from bridgeline.media.srtp import SrtpContext, key_length

SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM")
SHORT, LONG = 15, 75  # ticks per run
PORT_BASE, PORT_SPAN = 12000, 1000  # run i's RTP ports: below the ephemeral range and bench_rtp_legs.py's


def sender(peer_fd: int) -> None:
    """The helper: reads ports and keys on stdin, queues LONG ticks of packets from `peer_fd`."""
    job = json.loads(sys.stdin.read())
    peer = socket.socket(fileno=peer_fd)
    header = struct.Struct("!BBHII")
    payload = b"\xff" * 160
    contexts: list[SrtpContext | None] = [None] * len(job["ports"])
    if job["suite"] != "plain":
        keys = [bytes.fromhex(k) for k in job["keys"]]
        contexts = [SrtpContext(SrtpKeys(job["suite"], k, bytes(len(k)))) for k in keys]
    for t in range(LONG):
        for i, port in enumerate(job["ports"]):
            packet = header.pack(0x80, 0, t, t * 160, i + 1) + payload
            context = contexts[i]
            peer.sendto(packet if context is None else context.protect(packet), ("127.0.0.1", port))


def engine_run(legs: int, ticks: int, suite: str, port_min: int) -> None:
    """One traced run: set up, let the helper queue the packets, then `ticks` ticks."""
    engine = MediaEngine(port_min=port_min, port_max=port_min + 2 * legs + 1)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the legs' peer: what we send, nobody reads
    peer.bind(("127.0.0.1", 0))
    ports, keys = [], []
    for i in range(legs):
        ports.append(engine.open_leg(f"l{i}"))
        srtp = None
        if suite != "plain":
            theirs = os.urandom(key_length(suite))
            keys.append(theirs.hex())
            srtp = SrtpKeys(suite, os.urandom(key_length(suite)), theirs)
        engine.connect_leg(
            f"l{i}", remote=peer.getsockname(), payload_type=0, telephone_event_pt=101, send=True, srtp=srtp
        )
    for c in range(0, legs, 2):
        a, b = f"l{c}", f"l{c + 1}"
        engine.set_routes(f"c{c}", [LegAudio(a, (b,), None), LegAudio(b, (a,), None)], {})
    helper = subprocess.run(
        [sys.executable, __file__, "--sender", str(peer.fileno())],
        input=json.dumps({"suite": suite, "ports": ports, "keys": keys}),
        text=True,
        pass_fds=[peer.fileno()],
        check=True,
    )
    assert helper.returncode == 0
    loop = engine._media  # driven here instead of by its thread: one tick at a time
    runtime = loop.runtime
    media_thread.MAX_RECEIVE_ROUNDS = 1  # type: ignore[misc]  # one datagram per leg per tick
    now = time.monotonic()
    for _ in range(ticks):
        loop._receive(loop._poller.poll(0), now)
        loop._send(runtime.tick(now))
        runtime.pop_events()
        now += 0.02
    stats = engine.stats
    assert stats["packets_in"] == legs * ticks, stats
    assert not stats["srtp_auth_failed"] and not stats["srtp_replayed"], stats
    assert stats["packets_out"] >= legs * (ticks - 5), stats


def count(legs: int, suite: str, ticks: int, port_min: int) -> int:
    """All instructions of one traced run of `ticks` ticks."""
    child = [sys.executable, __file__, "--legs", str(legs), "--suite", suite, "--child", str(ticks)]
    child += ["--port-min", str(port_min)]  # a range of its own: runs in parallel bind no port twice
    return callgrind_instructions(child, timeout=3600)


def per_leg_tick(legs: int, suites: list[str], jobs: int) -> dict[str, float]:
    """Instructions per leg-tick for each mode: (LONG run - SHORT run) / extra leg-ticks. The runs
    are independent (instruction counts do not depend on what else runs): `jobs` at once."""
    runs = [(suite, ticks) for suite in suites for ticks in (SHORT, LONG)]
    with ThreadPoolExecutor(jobs) as pool:
        ranges = [PORT_BASE + i * PORT_SPAN for i in range(len(runs))]
        counted = pool.map(lambda run, port_min: count(legs, *run, port_min), runs, ranges)
        counts = dict(zip(runs, counted, strict=True))
    return {s: (counts[s, LONG] - counts[s, SHORT]) / ((LONG - SHORT) * legs) for s in suites}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=400)
    parser.add_argument("--suite", default="all", help="all, plain, a suite or suites separated by commas")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at once")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port-min", type=int, default=PORT_BASE, help=argparse.SUPPRESS)
    parser.add_argument("--sender", type=int, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if any(s not in (*SUITES, "all", "plain") for s in opts.suite.split(",")):
        parser.error(f"--suite: each of {', '.join(SUITES)}, all or plain")
    if 2 * opts.legs + 2 > PORT_SPAN:
        parser.error(f"--legs: at most {PORT_SPAN // 2 - 1}")
    if opts.sender is not None:
        sender(opts.sender)
        return
    if opts.child is not None:
        engine_run(opts.legs, opts.child, opts.suite, opts.port_min)
        return
    suites = [s for s in (SUITES if opts.suite == "all" else opts.suite.split(",")) if s != "plain"]
    counts = per_leg_tick(opts.legs, ["plain", *suites], opts.jobs)
    plain = counts["plain"]
    print(f"{opts.legs} legs, whole engine path, callgrind: plain {plain:,.0f} instructions per leg-tick")
    for suite in suites:
        srtp = counts[suite]
        print(f"  {suite}: {srtp:,.0f} (+{srtp - plain:,.0f}); ratio {plain / srtp:.0%}")


if __name__ == "__main__":
    main()
