"""SIP call setups per second and API -> INVITE latency while thousands of calls are held up.

bench_sip.py measures both on an otherwise empty server; this one measures them with --held calls
(2,000) established and idle on the same server, and, in the same run, with none (the baseline),
so that the report can give ratios. Each of the two phases runs on a fresh `bridgeline serve
--carrier sip` (SQLite, pinned to CPU 1; sipp, the UAS and this script on CPU 0), configured as in
bench_sip.py (a trunk whose proxy is this script's UAS, an inbound route to a PHLO whose run adopts
the caller and dials nobody) but with a wider RTP range, RTP_PORTS (5,000 port pairs: each leg
takes an RTP/RTCP pair; the default 20000-20999 holds 500 legs). Each leg also holds two sockets, so
this script raises its soft open-file limit (which the server inherits) to what 2 x (held + 2,000
more) sockets need, within the hard limit, and records both.

Held calls: a first sipp (bench/sipp/uac_inbound_hold.xml) calls the inbound number at --ramp-rate
until --held calls are established (ACK sent), then pauses in each (-d) until the bench ends them.
Each held call is a conference with one member, who hears wait music.

Media: by default the held calls' offer says `a=inactive` (a call on hold): the server answers
inactive and sends no RTP, and sipp sends none. With `--media sendrecv` the server streams wait music
to sipp's media port (which sipp never reads); for 2,000 legs that 20 ms tick alone took 60-70% of
the server's core (~100,000 packets/s out, late and skipped ticks; a shared 2-vCPU VM), setups
passed at 100/s but not at 200/s (189/s completed), and each INVITE waited behind a tick (API ->
INVITE p50 ~14 ms): the figure measured the media engine, which is bench_rtp_legs.py's subject,
not signalling at scale. A third phase (unless --no-media-check) holds the same calls with
`a=sendrecv` and measures only that cost and API -> INVITE, so the report shows it. Inactive legs
are not free either: the tick still walks every leg and re-encodes the music for it before
RtpLeg.send_tick drops it (26-41% of the core for 2,000 legs in these runs). Every phase reports
that cost: `held_idle` is the server's CPU, late/skipped ticks and RTP packets sent per second over
--idle seconds with the calls held and nothing else happening (--settle seconds after the ramp).

Then, on the same server (calls still held):
- API -> INVITE: bench_sip.py's measurement (a `call` action dials a number through the trunk; the
  time from the HTTP request to that INVITE at the UAS socket), --calls requests after 20 warm-up;
  first, because a failed setup step leaves calls and retransmissions behind.
- setups per second: a second sipp runs bench/sipp/uac_inbound.xml (INVITE, 200, ACK, --step-hold-ms
  pause, BYE; sendrecv, so these calls get RTP while they last) at each of --rates for --step
  seconds (-m rate x step), as bench_sip.py's steps do; a step passes with no failed call and >= 95%
  of the asked rate completed; a failed step disturbed by other processes is run once more; stepping
  stops at the first failure. Unlike bench_sip.py, steps share the server (ramping 2,000 calls up
  again per step would take minutes), so a later step also carries the earlier steps' lingering
  transactions (32 s).
- with --profile-dir: py-spy on the server with the calls held, idle and with setups at the first rate.
- the held calls are checked: sipp still counts --held calls current and none failed.
Finally the held sipp is interrupted (it then exits without BYEs: neither SIGUSR1 nor its `q`
command ends paused calls early) and the server is stopped.

Bounded: every sipp has -m and a global -timeout; every wait has a deadline. Only the processes
this script started are stopped, by pid. Loopback only.

Run: .venv/bin/python bench/bench_sip_held.py [--held 2000] [--rates 100,200,300] [--out f.json]
     .venv/bin/python bench/bench_sip_held.py --quick     (300 held calls, short steps; about 1 min)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import bench_sip as sip
import benchkit as kit

HOLD_SCENARIO = kit.BENCH / "sipp" / "uac_inbound_hold.xml"
RTP_PORTS = "40000-49999"  # 5,000 RTP/RTCP pairs: the held legs, the steps' calls in flight, API calls
UVLOOP_THREAD_FRAME = "runners.py:Runner.run"  # the event loop's thread under uvloop (as in bench_http.py)
HEADROOM_LEGS = 2000  # legs beyond the held ones the open-file limit must allow (steps, API calls)
WATCHED = (  # /metrics values kept per phase (bridgeline_sip_*, counters without _total)
    "rtp_ports_in_use",
    "media_ticks",
    "media_late_ticks",
    "media_skipped_ticks",
    "media_max_lateness_ms",
    "rtp_packets_out",
    "rtp_send_dropped",
    "rtp_ports_exhausted",
)


def raise_open_files(legs: int) -> dict[str, int]:
    """Two sockets per leg, plus the rest: raise the soft limit (inherited by the server) if short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * legs + 1024
    raised = soft
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    return {"soft_before": soft, "soft": raised, "hard": hard, "needed": needed}


def sip_metrics(server: kit.Server) -> dict[str, float]:
    """The server's bridgeline_sip_* values from /metrics (Prometheus text format)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": kit.basic_auth()})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("bridgeline_sip_"):
            name, _, value = line.rpartition(" ")
            name = name.removeprefix("bridgeline_sip_").removesuffix("_total")
            if name in WATCHED:
                values[name] = float(value)
    return values


# --------------------------------------------------------------------------- the held calls
class HeldCalls:
    """A background sipp that sets up `count` calls at `rate` and keeps them up (pause `hold_s`)."""

    def __init__(
        self, sip_port: int, count: int, rate: int, direction: str, hold_s: float, work: Path
    ) -> None:
        self.count, self.rate, self.hold_s = count, rate, hold_s
        self.dir = work / "held"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.command = [
            *kit.pin_prefix(kit.LOAD_CPU),
            "sipp",
            f"127.0.0.1:{sip_port}",
            "-sf",
            str(HOLD_SCENARIO),
            "-s",
            sip.INBOUND_NUMBER,
            "-key",
            "direction",
            direction,
            "-i",
            "127.0.0.1",
            "-p",
            str(kit.free_port(socket.SOCK_DGRAM)),
            "-mp",
            str(kit.free_port(socket.SOCK_DGRAM)),
            "-cp",  # its remote-control port: the default 8888 may be another sipp's
            str(kit.free_port(socket.SOCK_DGRAM)),
            "-r",
            str(rate),
            "-m",
            str(count),
            "-l",
            str(count),
            "-d",
            str(round(hold_s * 1000)),
            "-recv_timeout",
            "5000",
            "-timeout",
            f"{round(hold_s + 60)}s",  # a bound even if this script dies without stopping it
            "-nostdin",
            "-trace_stat",
            "-stf",
            "stats.csv",
            "-fd",
            "1",
            "-trace_counts",
            "-trace_err",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.dir / "sipp.stderr").open("wb") as err:
            self.process = subprocess.Popen(
                self.command, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stats(self) -> dict[str, int]:
        """sipp's cumulative counters (written every second), and the ACKs sent (established calls)."""
        last = sip._last_stats(self.dir / "stats.csv")
        out = {
            key: int(last.get(f"{key}(C)", 0) or 0)
            for key in ("OutgoingCall", "SuccessfulCall", "FailedCall", "Retransmissions")
        }
        out["CurrentCall"] = int(last.get("CurrentCall", 0) or 0)
        out["established"] = self._acks_sent()
        return out

    def _acks_sent(self) -> int:
        """From -trace_counts: the column counting the scenario's ACK sends (its 5th message)."""
        for path in self.dir.glob("*_counts.csv"):
            rows = [r.split(";") for r in path.read_text(errors="replace").splitlines() if r]
            if len(rows) >= 2:
                ack = next((i for i, name in enumerate(rows[0]) if name.endswith("_ACK_Sent")), None)
                if ack is not None and ack < len(rows[-1]) and rows[-1][ack].isdigit():
                    return int(rows[-1][ack])
        return 0

    def wait_established(self, timeout: float) -> dict[str, Any]:
        t0 = time.monotonic()
        stats = self.stats()
        while time.monotonic() - t0 < timeout and self.running():
            stats = self.stats()
            if stats["established"] >= self.count or stats["FailedCall"]:
                break
            time.sleep(0.5)
        return {
            **stats,
            "ramp_s": round(time.monotonic() - t0, 1),
            "rate": self.rate,
            "sipp_running": self.running(),
        }

    def stop(self) -> dict[str, Any]:
        """Interrupt sipp (this pid only). It exits at once without hanging up (neither SIGUSR1 nor
        its `q` command ends paused calls early); the server is stopped right after."""
        before = self.stats()
        if self.process is None:
            return before
        if self.running():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return {"before_stop": before, "sipp_exit": self.process.returncode}


# --------------------------------------------------------------------------- one phase
def idle_cost(server: kit.Server, seconds: float) -> dict[str, Any]:
    """What the server spends with the calls held and nothing else happening."""
    m0, cpu0, t0 = sip_metrics(server), kit.process_cpu_s(server.pid), time.monotonic()
    watch = kit.Disturbance(server.pid)
    time.sleep(seconds)
    m1, cpu1, wall = sip_metrics(server), kit.process_cpu_s(server.pid), time.monotonic() - t0
    ticks = m1.get("media_ticks", 0) - m0.get("media_ticks", 0)
    return {
        "seconds": round(wall, 2),
        "server_cpu_util": round((cpu1 - cpu0) / wall, 3),
        "rss_mb": round(kit.rss_kb(server.pid) / 1024, 1),
        "media_ticks_per_s": round(ticks / wall, 1),
        "late_ticks": int(m1.get("media_late_ticks", 0) - m0.get("media_late_ticks", 0)),
        "skipped_ticks": int(m1.get("media_skipped_ticks", 0) - m0.get("media_skipped_ticks", 0)),
        "rtp_packets_out_per_s": round((m1.get("rtp_packets_out", 0) - m0.get("rtp_packets_out", 0)) / wall),
        "rtp_send_dropped": int(m1.get("rtp_send_dropped", 0) - m0.get("rtp_send_dropped", 0)),
        "rtp_ports_in_use": int(m1.get("rtp_ports_in_use", 0)),
        **watch.stop(),
    }


def stepped_setups(
    server: kit.Server, sip_port: int, rates: list[int], step_s: float, hold_ms: int, work: Path
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best = 0
    for rate in rates:
        for attempt in range(2):  # a failed step is run again once if other processes disturbed it
            with kit.timed(f"sipp at {rate}/s"):
                step = sip.sipp_step(server, sip_port, rate, step_s, hold_ms, work / f"try-{attempt}")
            step["passed"] = sip.passed(step)
            steps.append(step)
            print(json.dumps({k: v for k, v in step.items() if not k.startswith("sipp_")}), flush=True)
            if step["passed"] or sip._disturbance(step) <= sip.DISTURBED:
                break
        if not step["passed"]:
            break
        best = rate
    return {"steps": steps, "best_rate_without_failure": best, "step_s": step_s, "hold_ms": hold_ms}


def api_to_invite(server: kit.Server, uas: sip.Uas, calls: int) -> dict[str, Any]:
    """bench_sip.py's measurement; as there, at most 3 runs, the least disturbed one kept."""
    path, agent = sip.start_sip_conference(server, uas)
    tries: list[dict[str, Any]] = []
    while len(tries) < 3 and (not tries or min(sip._disturbance(t) for t in tries) > sip.DISTURBED):
        with kit.timed("API -> INVITE"):
            watch = kit.Disturbance(server.pid, os.getpid())
            run = sip.invite_latency(server, uas, path, agent, calls, warmup=20, first=1000 * len(tries))
        run.pop("samples_s", None)
        tries.append({**run, **watch.stop()})
    least: dict[str, Any] = min(tries, key=sip._disturbance)
    return {
        **least,
        "runs": [(t["api_to_invite_ms"]["p99"], sip._disturbance(t)) for t in tries],
    }


def _finish_profile(proc: subprocess.Popen[bytes] | None, path: Path) -> dict[str, Any]:
    profile = kit.finish_profile(proc, path, 25)
    if profile.get("samples") == 0:  # uvloop runs callbacks from C: no asyncio _run_once frame
        profile = kit.analyse_collapsed(path, 25, thread_frame=UVLOOP_THREAD_FRAME)
    return profile


def wait_calm(server: kit.Server, level: float, timeout: float) -> float:
    """Wait until the server's CPU over a second is back near `level` (a failed step leaves calls
    and retransmissions behind for up to 32 s); the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        cpu0 = kit.process_cpu_s(server.pid)
        time.sleep(1.0)
        if kit.process_cpu_s(server.pid) - cpu0 <= level + 0.1:
            break
    return round(time.monotonic() - t0, 1)


def profile_held(
    server: kit.Server, sip_port: int, opts: argparse.Namespace, work: Path, idle_cpu: float
) -> dict[str, Any]:
    """py-spy on the server with the calls held: alone, then with setups at the first rate (after the
    measurements, once the server is calm again: sampling pauses the server)."""
    out: dict[str, Any] = {"calm_after_s": wait_calm(server, idle_cpu, 45)}
    path = opts.profile_dir / "sip-held-idle.txt"
    proc = kit.start_profile(server.pid, opts.idle, path, rate=100)
    time.sleep(opts.idle + 0.5)
    out["idle"] = _finish_profile(proc, path)
    rate = opts.rates[0]
    path = opts.profile_dir / "sip-held-setups.txt"
    proc = kit.start_profile(server.pid, opts.step, path, rate=100)
    time.sleep(0.3)
    step = sip.sipp_step(server, sip_port, rate, opts.step, opts.step_hold_ms, work / "profile")
    out["setups"] = {
        **_finish_profile(proc, path),
        "rate": rate,
        "failed_while_sampled": step["failed"],
    }
    return out


def phase(
    uas: sip.Uas, held: int, media: str, opts: argparse.Namespace, work: Path, steps: bool = True
) -> dict[str, Any]:
    """A fresh server: `held` calls up (0: the baseline) with `media` SDP, their cost, API -> INVITE,
    then (`steps`) the sipp steps and the profiles."""
    work = work / f"held-{held}-{media}"
    shutil.rmtree(work, ignore_errors=True)  # sipp's files of an earlier run would read as this one's
    result: dict[str, Any] = {"held": held, "media": media if held else None}
    with sip.InboundServer(uas.port, RTP_PORTS) as inbound:
        server = inbound.server
        calls: HeldCalls | None = None
        try:
            if held:
                # The held calls pause far longer than the phase lasts; stop() ends them earlier.
                calls = HeldCalls(inbound.sip_port, held, opts.ramp_rate, media, opts.max_hold, work)
                with kit.timed(f"{held} calls up at {opts.ramp_rate}/s"):
                    calls.start()
                    result["ramp"] = calls.wait_established(held / opts.ramp_rate + 60)
                print(json.dumps({"ramp": result["ramp"]}), flush=True)
                if result["ramp"]["established"] < held or result["ramp"]["FailedCall"]:
                    result["error"] = f"only {result['ramp']['established']} of {held} calls established"
                    return result
            time.sleep(opts.settle)  # the ramp's last transactions and run starts settle first
            result["held_idle"] = idle_cost(server, opts.idle)
            print(json.dumps({"held_idle": result["held_idle"]}), flush=True)
            # API -> INVITE before the steps: a step that fails leaves calls and retransmissions behind.
            result["api_to_invite"] = api_to_invite(server, uas, opts.calls)
            print(json.dumps({"api_to_invite": result["api_to_invite"]["api_to_invite_ms"]}), flush=True)
            if steps:
                result["setups"] = stepped_setups(
                    server, inbound.sip_port, opts.rates, opts.step, opts.step_hold_ms, work
                )
            if steps and opts.profile_dir is not None and held:
                idle_cpu = result["held_idle"]["server_cpu_util"]
                result["profiles"] = profile_held(server, inbound.sip_port, opts, work, idle_cpu)
            result["server_metrics"] = sip_metrics(server)
            if calls is not None:
                time.sleep(1.1)  # sipp writes its counters every second
                still = calls.stats()
                result["held_check"] = {
                    **still,
                    "held_throughout": still["CurrentCall"] >= held and still["FailedCall"] == 0,
                }
        finally:
            if calls is not None:
                result["held_end"] = calls.stop()
    result["server_tracebacks"] = inbound.tracebacks
    return result


def ratio(held: float | None, base: float | None) -> float | None:
    return round(held / base, 2) if held and base else None


def main(opts: argparse.Namespace) -> dict[str, Any]:
    load0 = kit.loadavg()
    results: dict[str, Any] = {"machine": kit.machine(), "rtp_ports": RTP_PORTS, "media": opts.media}
    results["open_files"] = raise_open_files(opts.held + HEADROOM_LEGS)
    uas = sip.Uas({"+14155551001", "+14155551002"})
    uas.start()
    try:
        results["baseline"] = phase(uas, 0, opts.media, opts, opts.work)
        results["held"] = phase(uas, opts.held, opts.media, opts, opts.work)
        if opts.media_check and opts.media != "sendrecv":
            # What the media costs: the same calls held with music streamed to them (no setup steps:
            # with the tick taking most of the core they measure the media engine).
            results["held_sendrecv"] = phase(uas, opts.held, "sendrecv", opts, opts.work, steps=False)
    finally:
        uas.stop()
    base, held = results["baseline"], results["held"]

    def best(r: dict[str, Any]) -> float | None:
        value = r.get("setups", {}).get("best_rate_without_failure")
        return None if value is None else float(value)

    def p99(r: dict[str, Any]) -> float | None:
        value = r.get("api_to_invite", {}).get("api_to_invite_ms", {}).get("p99")
        return None if value is None else float(value)

    results["ratios"] = {
        "setups_held_over_baseline": ratio(best(held), best(base)),
        "api_to_invite_p99_held_over_baseline": ratio(p99(held), p99(base)),
    }
    results["loadavg_start"], results["loadavg_end"] = load0, kit.loadavg()
    results["command"] = (
        f".venv/bin/python bench/bench_sip_held.py --held {opts.held} --ramp-rate {opts.ramp_rate}"
        f" --media {opts.media} --rates {','.join(map(str, opts.rates))} --step {opts.step:g}"
        f" --step-hold-ms {opts.step_hold_ms} --calls {opts.calls} --idle {opts.idle:g}"
        + ("" if opts.media_check else " --no-media-check")
    )
    kit.write_result(opts.out, "sip_held", results)
    return results


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=2000, help="calls held up during the measurements")
    parser.add_argument("--ramp-rate", type=int, default=100, help="calls/s while setting the held calls up")
    parser.add_argument(
        "--media", choices=("inactive", "sendrecv"), default="inactive", help="the held calls' SDP direction"
    )
    parser.add_argument("--rates", default="100,200,300", help="sipp call rates to step through")
    parser.add_argument("--step", type=float, default=5.0, help="seconds of calls per rate step")
    parser.add_argument(
        "--step-hold-ms", type=int, default=100, help="pause between ACK and BYE in the steps"
    )
    parser.add_argument("--calls", type=int, default=100, help="measured `call` actions (API -> INVITE)")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds measuring the server with calls held"
    )
    parser.add_argument(
        "--max-hold", type=float, default=480.0, help="upper bound on a held call (and its sipp), in s"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between the ramp and the rest")
    parser.add_argument("--profile-dir", type=Path, default=None, help="also profile with py-spy")
    parser.add_argument(
        "--no-media-check",
        dest="media_check",
        action="store_false",
        help="skip the third phase (the calls held with music streamed: its CPU and API -> INVITE)",
    )
    parser.add_argument("--quick", action="store_true", help="300 held calls, 3 s steps, 50 requests")
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bridgeline-bench/sipp-held"))
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.held, opts.step, opts.calls, opts.idle = min(opts.held, 300), 3.0, 50, 3.0
    opts.rates = [int(r) for r in opts.rates.split(",") if r]
    return opts


if __name__ == "__main__":
    main(options())
