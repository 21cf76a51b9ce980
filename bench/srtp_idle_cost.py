"""What an idle core costs libsrtp (not a test): one tick's SRTP work for N legs (each leg's
received packet unprotected, its reply protected, through the runtime's own C batches
`unprotect_all` and `protect_all`), timed on the thread's CPU clock, with the thread either busy or
sleeping between ticks as the media thread does (docs/benchmarks.md 4b, "Capacity, and where
SRTP's time goes").

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/srtp_idle_cost.py [--legs 300] [--ticks 200]
        [--sleep-ms 0,2,10] [--rounds 3] [--suite AES_CM_128_HMAC_SHA1_80,AEAD_AES_128_GCM]
        [--hmac compact,libsrtp]

Each (suite, sleep) runs `--rounds` times, alternated; the figure is CPU ns per leg-tick (one
unprotect and one protect), the median of the rounds. Only the SRTP calls are timed: the sleep and
the packets' making are not. Pinned to benchkit.SERVER_CPU. `--hmac` lists whose HMAC-SHA1 the
AES_CM suites run with (`srtp.use_hmac`: ours, media/_srtp_hmac.c, or libsrtp's own), each a case.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

import benchkit as kit
import numpy as np

from bridgeline.media.srtp import (
    HmacSha1,
    SrtpContext,
    SrtpKeys,
    key_length,
    protect_all,
    unprotect_all,
    use_hmac,
)

_HEADER = struct.Struct("!BBHII")
_PAYLOAD = bytes(range(160))  # a PCMU frame's size


def _packet(tick: int, leg: int) -> bytes:
    return _HEADER.pack(0x80, 0, tick & 0xFFFF, tick * 160, leg + 1) + _PAYLOAD


def one_run(suite: str, legs: int, ticks: int, sleep_s: float) -> float:
    """CPU ns per leg-tick of the SRTP calls, the thread sleeping `sleep_s` between ticks."""
    size = key_length(suite)
    theirs = [os.urandom(size) for _ in range(legs)]
    ours = [os.urandom(size) for _ in range(legs)]
    peers = [SrtpContext(SrtpKeys(suite, theirs[i], ours[i])) for i in range(legs)]
    engine = [SrtpContext(SrtpKeys(suite, ours[i], theirs[i])) for i in range(legs)]
    inbound = {f"l{i}": engine[i].unprotect for i in range(legs)}
    arriving = []  # what the peers send, protected before the timed loop
    for tick in range(ticks):
        sent: list[tuple[str, bytes, None]] = []
        protect_all([(f"l{i}", _packet(tick, i), None, peers[i].protect) for i in range(legs)], sent)
        arriving.append([(leg, "rtp", data, None) for leg, data, _ in sent])
    spent = 0
    for tick in range(ticks):
        if sleep_s:
            time.sleep(sleep_s)
        replies = [(f"l{i}", _packet(tick, i), None, engine[i].protect) for i in range(legs)]
        out: list[tuple[str, bytes, None]] = []
        start = time.thread_time_ns()
        checked = unprotect_all(arriving[tick], inbound)
        refused = protect_all(replies, out)
        spent += time.thread_time_ns() - start
        if refused or not all(isinstance(c, bytes) for c in checked):
            raise SystemExit("libsrtp refused a packet: the run is not valid")
    return spent / (ticks * legs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=300)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--sleep-ms", default="0,2,10", help="comma-separated idle times between ticks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suite", default="AES_CM_128_HMAC_SHA1_80,AEAD_AES_128_GCM")
    parser.add_argument("--hmac", default="compact", help="comma-separated: compact, libsrtp (AES_CM)")
    parser.add_argument("--out", default=None, help="JSON results file")
    opts = parser.parse_args()
    kit.pin_self(kit.SERVER_CPU)
    sleeps = [float(ms) / 1000 for ms in opts.sleep_ms.split(",")]
    suites = opts.suite.split(",")
    hmacs = opts.hmac.split(",")
    runs: dict[str, list[float]] = {}
    for r in range(opts.rounds):
        cases = [
            (suite, HmacSha1(hmac), sleep)
            for suite in suites
            for hmac in (hmacs if "HMAC" in suite else hmacs[:1])
            for sleep in sleeps
        ]
        for suite, hmac, sleep in cases if r % 2 == 0 else cases[::-1]:
            if use_hmac(hmac) is not hmac:
                raise SystemExit(f"cannot use the {hmac} HMAC-SHA1 here")
            ns = one_run(suite, opts.legs, opts.ticks, sleep)
            case = f"{suite}{f' ({hmac} HMAC)' if 'HMAC' in suite else ''}, idle {sleep * 1000:g} ms"
            runs.setdefault(case, []).append(round(ns))
            print(f"round {r + 1}: {case}: {ns:,.0f} ns", file=sys.stderr, flush=True)
    summary = {case: round(float(np.median(ns))) for case, ns in runs.items()}
    print(
        "\n| suite, idle between ticks | CPU ns per leg-tick (median) | rounds |\n|---|---:|---|",
        file=sys.stderr,
    )
    for case, ns in summary.items():
        print(f"| {case} | {ns:,} | {', '.join(f'{x:,}' for x in runs[case])} |", file=sys.stderr)
    kit.write_result(
        opts.out,
        "srtp_idle_cost",
        {
            "machine": kit.machine(),
            "legs": opts.legs,
            "ticks": opts.ticks,
            "runs": runs,
            "median_ns_per_leg_tick": summary,
            "command": "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/srtp_idle_cost.py"
            f" --legs {opts.legs} --ticks {opts.ticks} --sleep-ms {opts.sleep_ms}"
            f" --rounds {opts.rounds} --suite {opts.suite} --hmac {opts.hmac}",
        },
    )


if __name__ == "__main__":
    main()
