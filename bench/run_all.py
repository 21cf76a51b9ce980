"""Run the whole benchmark suite and write docs/benchmarks.md (what `make bench` does).

Each figure is one script of bench/, run as its own process (bounded by a timeout) that writes a
JSON result into --results; this script then writes the report from those files. `--only http,sip`
reruns some figures and reuses the other results already in --results (their own timestamps and
load averages are printed with them). A script that fails is reported as such, with its stderr.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/run_all.py [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchkit as kit
from report_format import cmd, failed, figure_meta, load, n0, n1, n2, pct, profile_block, verdict
from report_held import held_advice, held_row, held_section
from report_tick import TickReport
from report_tls import tls_row, tls_section

FIGURES: dict[str, tuple[list[str], float]] = {
    # name: (script and arguments, timeout in seconds)
    "media": (["bench_media.py"], 180),
    "http": (["bench_http.py", "--measure", "5"], 300),
    "conferences": (["bench_conferences.py", "--n", "10000", "--measure", "5"], 420),
    "sip": (
        [
            "bench_sip.py",
            "--calls",
            "200",
            "--rates",
            "25,50,100,200,300,400,500",
            "--step",
            "5",
            "--sustain",
            "33",
        ],
        420,
    ),
    # 2,000 calls held up, then the sipp steps and API -> INVITE; and the same with none (~4 min).
    "held": (["bench_sip_held.py", "--held", "2000", "--rates", "100,200,300,400", "--step", "5"], 600),
    "rtp": (["bench_rtp_legs.py", "--budget", "200", "--run", "6"], 480),
    "outbox": (["bench_outbox.py", "--pending", "100000", "--measure", "8", "--rounds", "3"], 600),
    "tick": (["bench_tick_isolation.py", "--phase", "15"], 300),
    # setups/s over UDP, TCP and TLS: three interleaved rounds of 10 s each, a fresh server per run (~5 min)
    "tls": (["bench_sip_tls.py", "--seconds", "10", "--rounds", "3"], 480),
}
PROFILED = {"http", "sip", "rtp", "held"}


def run_figure(name: str, results: Path, profiles: Path) -> dict[str, Any]:
    args, timeout = FIGURES[name]
    out = results / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [kit.PYTHON, str(kit.BENCH / args[0]), *args[1:], "--out", str(out)]
    if name in PROFILED:
        command += ["--profile-dir", str(profiles)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    quiet = kit.wait_quiet(30.0)  # a shared machine: start each figure in a quiet moment if one comes
    started, load0 = time.time(), kit.loadavg()
    print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            command, cwd=kit.ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        error = None if done.returncode == 0 and out.exists() else f"exit {done.returncode}"
        stderr = done.stderr
    except subprocess.TimeoutExpired as exc:
        error, stderr = f"timed out after {timeout} s", str(exc.stderr or "")
    (results / f"{name}.stderr").write_text(stderr)
    meta = {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "suite_loadavg_start": load0,
        "suite_loadavg_end": kit.loadavg(),
        "quiet_before": quiet,
    }
    if error is not None:
        result = {"name": name, "error": error, "stderr_tail": stderr[-2500:], **meta}
        out.write_text(json.dumps(result, indent=2))
        print(f"   {name} failed: {error}", file=sys.stderr, flush=True)
        return result
    result = dict(json.loads(out.read_text()))
    result.update(meta)
    out.write_text(json.dumps(result, indent=2))
    print(f"   {name}: {meta['duration_s']} s", file=sys.stderr, flush=True)
    return result


# --------------------------------------------------------------------------- formatting helpers
def by_name_lines(b: dict[str, Any] | None) -> list[str]:
    """The trunk-by-name comparison of bench_sip.py (RFC 3263 lookups served from the cache)."""
    if not b:
        return []
    if "error" in b:
        return [f"**API -> INVITE, trunk by name:** not measured ({b['error']}).", ""]
    ip, name = b["by_ip_ms"], b["by_name_ms"]
    disturbance = pct(b.get("other_cpu_util", 0) + b.get("steal_util", 0))
    return [
        "**API -> INVITE, trunk by name (RFC 3263, cached).** Two servers side by side, one whose trunk"
        " proxy is the UAS's IP address, one whose proxy is a name with an SRV record (dnsmasq on"
        f" 127.0.0.1) for the same UAS, measured in {b['rounds']} alternating rounds: by IP p50"
        f" {n2(ip['p50'])} / p99 {n2(ip['p99'])} ms, by name p50 {n2(name['p50'])} / p99"
        f" {n2(name['p99'])} ms ({name['n']} calls each): p99 ratio name / IP"
        f" **{n2(b['p99_by_name_over_by_ip'])}**. DNS queries sent during the measured calls:"
        f" {n0(b['dns_lookups_during'])} ({n0(b['dns_cache_hits_during'])} records served from the"
        f" cache); other processes and steal took {disturbance} of a core meanwhile.",
        "",
    ]


def kit_ladder(r: dict[str, Any]) -> list[int]:
    """The leg counts the RTP benchmark tried."""
    return sorted({int(x["legs"]) for x in r.get("runs", [])})


# --------------------------------------------------------------------------- the report
class Report(TickReport):
    def __init__(self, results: dict[str, dict[str, Any]], suite: dict[str, Any]) -> None:
        self.r = results
        self.suite = suite
        self.rows: list[str] = []  # the summary table
        self.unmet: list[tuple[str, Callable[[], list[str]]]] = []
        self.unmet_keys: set[str] = set()  # HTTP figures whose target was missed
        self.not_measured: list[str] = []

    # ------------------------------------------------------------------ summary rows
    def row(
        self, figure: str, measured: str, baseline: str, ratio: str, target: str, met: bool | None
    ) -> None:
        self.rows.append(f"| {figure} | {measured} | {baseline} | {ratio} | {target} | {verdict(met)} |")

    def http_rows(self) -> None:
        h = self.get("http")
        if h is None:
            self.row("Actions/s through the HTTP API", "not measured", "-", "-", "see below", None)
            return
        base = h["baseline"]
        for key, label in (
            ("member_actions", "Member actions/s (hold/unhold), 50 clients, sim, SQLite"),
            ("mpc_actions", "MPC + member actions/s (call/hangup), 50 clients, sim, SQLite"),
        ):
            x = h[key]
            lat = x["latency_ms"]
            ratio = x["ok_per_s"] / base["ok_per_s"] if base["ok_per_s"] else 0.0
            met = ratio >= 0.5 and lat["p99"] < 25 and x["ok_per_s"] >= 1500
            self.row(
                label,
                f"{n0(x['ok_per_s'])}/s (non-201: {x['not_ok']}); p50 {n1(lat['p50'])} ms, p99"
                f" {n1(lat['p99'])} ms",
                f"GET /v1/phlo/{{id}}: {n0(base['ok_per_s'])}/s, p99 {n1(base['latency_ms']['p99'])} ms",
                pct(ratio),
                ">= 50% of baseline; p99 < 25 ms; >= 1,500/s on one core",
                met,
            )
            if not met:
                self.unmet_keys.add(key)
                self.unmet.append((label, lambda key=key: self.http_advice(key)))  # type: ignore[misc]

    def conference_rows(self) -> None:
        c = self.get("conferences")
        if c is None:
            self.row("Live conferences held at once", "not measured", "-", "-", "10,000", None)
            return
        per = c["bytes_per_conference"] / 1024
        p99 = c["loaded"]["latency_ms"]["p99"]
        ok = c["live_conferences"] >= c["n"] and per < 20 and p99 < 50 and c["loaded"]["not_ok"] == 0
        self.row(
            "Live conferences, 2 members each (sim)",
            f"{n0(c['live_conferences'])} live, {n1(per)} KB each (RSS delta / N); hold/unhold at"
            f" {c['light_rate']:g}/s: p50 {n1(c['loaded']['latency_ms']['p50'])} ms, p99 {n1(p99)} ms",
            f"idle server: RSS {n0(c['rss_idle_kb'] / 1024)} MB; p50"
            f" {n1(c['idle']['latency_ms']['p50'])} ms, p99 {n1(c['idle']['latency_ms']['p99'])} ms",
            f"p99 x{p99 / max(c['idle']['latency_ms']['p99'], 1e-9):.1f}",
            "10,000 conferences, < 20 KB each, p99 < 50 ms",
            ok,
        )
        if not ok:
            self.unmet.append(("Live conferences", self.conference_advice))

    def invite_rows(self) -> None:
        s = self.get("sip")
        if s is None or "api_to_invite" not in s:
            self.row("API request to INVITE on the wire (sip)", "not measured", "-", "-", "p99 < 5 ms", None)
            return
        a = s["api_to_invite"]["api_to_invite_ms"]
        floor = self.latency_floor()
        ok = a["p99"] < 5
        self.row(
            "API request to INVITE on the wire (`call`, sip carrier)",
            f"p50 {n2(a['p50'])} ms, p99 {n2(a['p99'])} ms ({a['n']} calls)",
            "- (machine's loopback HTTP round trip to a do-nothing server: " + floor + ")",
            "-",
            "p99 < 5 ms",
            ok,
        )
        if not ok:
            self.unmet.append(("API request to INVITE", self.invite_advice))

    def rtp_rows(self) -> None:
        r = self.get("rtp")
        if r is None:
            self.row("Concurrent RTP legs per core", "not measured", "-", "-", ">= 1,000 legs/core", None)
            return
        s = r["summary"]
        relay = s.get("echo relay (baseline)", {})
        first = min(kit_ladder(r), default=100)

        def legs(n: int | None, top: int) -> str:
            if not n:
                return f"< {first} (the first step already missed)"
            return f"{n0(n)}" + (" (the ladder's top: more not tried)" if n >= top else "")

        any_unmet = False
        for label in ("engine, 2-party", "engine, 10-party", "engine, 100-party"):
            e = s.get(label)
            if not e:
                continue
            relay_n = relay.get("largest_legs_under_1pct_late") or 0
            by_n = e["largest_legs_under_1pct_late"] / relay_n if relay_n else None
            relay_cpu = relay.get("legs_per_core_by_cpu") or 0
            by_cpu = (e["legs_per_core_by_cpu"] or 0) / relay_cpu if relay_cpu else None
            # The relay's "largest N" is often the ladder's top (a floor, not its capacity): compare
            # capacities by CPU, the steadier measure, and require 1,000 legs actually carried.
            ok = e["largest_legs_under_1pct_late"] >= 1000 and (by_cpu or 0) >= 0.6
            any_unmet |= not ok
            self.row(
                f"RTP legs per core, {label.split(', ')[1]} conferences (G.711, 20 ms)",
                f"{legs(e['largest_legs_under_1pct_late'], e['ladder_top'])} legs with < 1% late ticks"
                f" (measured); {n1(e['cpu_us_per_leg_tick'])} us CPU per leg-tick ="
                f" {n0(e['legs_per_core_by_cpu'])} legs/core by CPU",
                f"echo relay: {legs(relay_n, relay.get('ladder_top', 0))} legs;"
                f" {n1(relay.get('cpu_us_per_leg_tick'))} us = {n0(relay.get('legs_per_core_by_cpu'))}"
                " legs/core",
                f"{pct(by_n)} (by N); {pct(by_cpu)} (by CPU)",
                ">= 1,000 legs/core with < 1% late, and >= 60% of the relay (by CPU)",
                ok,
            )
        srtp = s.get("engine, 2-party, SRTP")
        if srtp:
            pairs = srtp.get("vs_plain_pairs") or {}
            # Pairs whose runs fell behind skipped ticks (less work per leg-tick): not comparable.
            vs = pairs if pairs.get("max_late_pct", 100) < 1 else srtp.get("vs_plain") or {}
            ratio = vs.get("ratio_by_cpu")
            ok = (ratio or 0) >= 0.8
            any_unmet |= not ok
            self.row(
                "SRTP legs per core, 2-party conferences (AES_CM_128_HMAC_SHA1_80, SDES)",
                f"{legs(srtp['largest_legs_under_1pct_late'], srtp['ladder_top'])} legs with < 1% late ticks;"
                f" at {n0(vs.get('legs'))} legs {n1(vs.get('srtp_cpu_us_per_leg_tick'))} us CPU per leg-tick",
                f"plain RTP, same run and N: {n1(vs.get('plain_cpu_us_per_leg_tick'))} us per leg-tick"
                + (f" (medians of {vs['pairs']} alternated pairs)" if "pairs" in vs else ""),
                f"{pct(ratio)} (by CPU)",
                ">= 80% of plain RTP legs per core (by CPU)",
                ok,
            )
        if any_unmet:
            self.unmet.append(("Concurrent RTP legs per core", self.rtp_advice))

    def setup_rows(self) -> None:
        s = self.get("sip")
        st = None if s is None else s.get("setups")
        if st is None or "error" in st:
            self.row("SIP call setups/s (sipp)", "not measured", "-", "-", ">= 200/s", None)
            if st is not None:
                self.not_measured.append(f"SIP call setups per second: {st['error']}.")
            return
        best = st["best_rate_without_failure"]
        sustained = st.get("sustained") or []
        sus_text = "; ".join(
            f"sustained {x['rate']}/s for {st.get('sustain_s', 0):g} s:"
            f" {'passed' if x['passed'] else 'FAILED'}"
            f" ({x['failed']} failed of {x['calls']}, {n1(x['completed_per_s'])}/s completed)"
            for x in sustained
        )
        ok = best >= 200 and st.get("best_sustained_rate", 0) >= 200
        self.row(
            "SIP call setups/s (INVITE, 200, ACK, BYE; sipp; sip carrier)",
            f"best {st['step_s']:g} s step without a failed call: {best}/s"
            + (" (the ladder's top: more not tried)" if best >= max(x["rate"] for x in st["steps"]) else "")
            + f"; {sus_text or 'not sustained'}",
            "-",
            "-",
            ">= 200/s with no failed call",
            ok,
        )
        if not ok:
            self.unmet.append(("SIP call setups per second", self.setup_advice))

    def held_rows(self) -> None:
        r = self.get("held")
        figure, measured, baseline, ratio, target, met = held_row(r)
        self.row(figure, measured, baseline, ratio, target, met)
        if r is not None and met is False:
            self.unmet.append(("SIP setups with calls held up", lambda: held_advice(r)))

    def mixer_rows(self) -> None:
        m = self.get("media")
        if m is None:
            self.row("Mixer tick", "not measured", "-", "-", "within 3x", None)
            return
        bad = False
        for row in m["mixer"]:
            ok = row["ratio"] <= 3
            bad |= not ok
            self.row(
                f"Mixer: one 20 ms tick, N = {row['n']} (mix-minus)",
                f"{n1(row['mixer_mix_minus_us'])} us ({row['budget_share_pct']:.2f}% of 20 ms)",
                f"numpy sum(axis=0): {n1(row['numpy_sum_us'])} us",
                f"{row['ratio']:.2f}x",
                "within 3x",
                ok,
            )
        if bad:
            self.unmet.append(("Mixer within 3x of numpy's summation", self.mixer_advice))

    def outbox_rows(self) -> None:
        o = self.get("outbox")
        label = "API p99 with 100,000 callbacks pending, receiver down (hold/unhold at 100/s)"
        if o is None:
            self.row(label, "not measured", "-", "-", "within 1.2x", None)
            return
        b, e = o["backlog"], o["empty"]
        ok = o["p99_ratio"] <= 1.2 and b["not_ok"] == 0
        self.row(
            label,
            f"p50 {n1(b['p50_ms_median'])} ms, p99 {n1(b['p99_ms_median'])} ms ({n0(b['pending_at_end'])}"
            " pending at the end)",
            f"empty outbox: p50 {n1(e['p50_ms_median'])} ms, p99 {n1(e['p99_ms_median'])} ms",
            f"p99 x{o['p99_ratio']:.2f}",
            "within 1.2x",
            ok,
        )

    # ------------------------------------------------------------------ sections
    def outbox_section(self) -> list[str]:
        o = self.r.get("outbox")
        lines = ["### 7. API latency with a large callback backlog (sim carrier, SQLite)", ""]
        if (why := failed(o)) is not None:
            return [*lines, why, ""]
        assert o is not None
        lines += [
            cmd(o) + ". " + figure_meta(o),
            "",
            "Two servers, each with SQLite in a fresh data directory and every callback URL on a port where"
            " nothing listens. One starts with an empty outbox; the other with"
            f" {n0(o['pending'])} pending deliveries written before it starts (20 per ended conference, each"
            " queue's head already retried and due over the next five minutes, the rest never tried, as an"
            " outage under an earlier version leaves them; the server parks those behind their head once,"
            f" in pages: {o['backlog']['settle_s']:g} s here, before the windows). Each gets"
            f" {o['probes']} connected probe conferences; then, alternating between the servers, windows of"
            f" hold/unhold at {o['light_rate']:g} requests/s (open loop) for {o['measure_s']:g} s each;"
            " the median window is reported.",
            "",
            "| outbox | p99 per window (ms) | median p50 ms | median p99 ms | not OK | pending at the end |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for key in ("empty", "backlog"):
            x = o[key]
            windows = ", ".join(n1(w["latency_ms"]["p99"]) for w in x["windows"])
            lines.append(
                f"| {key} | {windows} | {n2(x['p50_ms_median'])} | {n2(x['p99_ms_median'])} | {x['not_ok']}"
                f" | {n0(x['pending_at_end'])} |"
            )
        return [*lines, ""]

    def anchors(self) -> list[str]:
        r, s, m = self.get("rtp"), self.get("sip"), self.get("media")
        mhz = (r or s or m or {}).get("machine", {}).get("cpu_mhz") or 0
        lines = [
            "## Published anchors (not measured here)",
            "",
            "| Anchor (published) | Bridgeline in this run |",
            "|---|---|",
        ]
        if r is not None and mhz:
            e = r["summary"].get("engine, 2-party", {})
            rl = r["summary"].get("echo relay (baseline)", {})
            calls = (e.get("legs_per_core_by_cpu") or 0) / 2
            lines.append(
                "| Asterisk as a B2BUA carries about 100 G.711 calls per GHz |"
                f" 2-party engine: {n0(e.get('legs_per_core_by_cpu'))} legs per core by CPU ="
                f" {n0(calls)} two-leg calls on a {mhz / 1000:.2f} GHz core = {n0(calls / (mhz / 1000))}"
                f" calls per GHz (relay floor: {n0((rl.get('legs_per_core_by_cpu') or 0) / 2 / (mhz / 1000))}"
                " calls per GHz); legs here are conference legs: each packet goes through a jitter"
                " buffer and is relayed (2-party, same codec) or decoded, mixed and re-encoded |"
            )
        if s is not None and isinstance(s.get("setups"), dict) and "steps" in s["setups"]:
            lines.append(
                "| Sippy B2BUA claims 150-400 call setups per second |"
                f" {s['setups']['best_rate_without_failure']}/s in {s['setups']['step_s']:g} s steps without"
                " a"
                " failed call (each call also starts and ends a conference and commits it to SQLite) |"
            )
        if m is not None:
            n100 = next((x for x in m["mixer"] if x["n"] == 100), None)
            one = (r or {}).get("one_100_party_conference")
            extra = ""
            if one:
                extra = (
                    f"; the engine with one 100-party conference: {one['late_pct']:.2f}% late ticks,"
                    f" {pct(one['cpu_s'] / one['wall_s'])} of a core"
                )
            if n100:
                lines.append(
                    "| Twilio allows 250 participants per conference; Plivo's MPC allows 10 |"
                    " PHLO nodes accept max_participants up to 250 (default 10, as Plivo); mixer at N=100:"
                    f" {n1(n100['mixer_mix_minus_us'])} us per tick ({n100['budget_share_pct']:.2f}% of the"
                    " 20 ms"
                    f" budget){extra} |"
                )
        if s is not None and "api_to_invite" in s:
            a = s["api_to_invite"]["api_to_invite_ms"]
            lines.append(
                "| Twilio: 1 outbound call per second per account by default |"
                f" no rate limit on `call`; API -> INVITE p50 {n2(a['p50'])} ms on an idle server |"
            )
        return [*lines, ""]

    def http_section(self) -> list[str]:
        h = self.r.get("http")
        lines = ["### 1. Actions per second through the HTTP API (sim carrier, SQLite data dir)", ""]
        if (why := failed(h)) is not None:
            return [*lines, why, ""]
        assert h is not None
        g = h["generator"]
        lines += [
            cmd(h) + ". " + figure_meta(h),
            "",
            "Server: `bridgeline serve --carrier sim` with SQLite in a fresh data directory,"
            " BRIDGELINE_SIM_ANSWER_DELAY_MS=0, pinned to CPU 1. Load: bench/httpload.py on CPU 0, 50"
            " keep-alive HTTP/1.1 connections, closed loop, one request in flight per connection;"
            f" {h['warmup_s']:g} s warm-up, then a {h['measure_s']:g} s window. Each connection owns one"
            " live conference: hold/unhold alternates on its customer; call/hangup adds a third party"
            " (`call` MPC action, the sim phone answers) and hangs it up (member action). Every request is"
            " a committed state change; answers other than 201 are counted apart. Figures and baseline"
            " alternate in rounds; per figure the least disturbed window is kept (`windows` lists the"
            " throughput of each and the share of a core that other processes and steal took).",
            "",
            "| load | answered OK/s | not OK | p50 ms | p90 ms | p99 ms | max ms | server CPU | generator CPU"
            " | other CPU | steal | windows (OK/s, other CPU + steal) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, label in (
            ("baseline", "baseline: GET /v1/phlo/{id}"),
            ("member_actions", "hold / unhold"),
            ("mpc_actions", "call / hangup"),
            ("baseline_light", f"baseline at {h['light_rate']:g}/s (open loop)"),
            ("member_actions_light", f"hold / unhold at {h['light_rate']:g}/s (open loop)"),
        ):
            x = h.get(key)
            if not x:
                continue
            lat = x["latency_ms"]
            windows = ", ".join(f"({n0(a)}, {pct(b)})" for a, b in x.get("windows", []))
            lines.append(
                f"| {label} | {n0(x['ok_per_s'])} | {x['not_ok']} | {n2(lat['p50'])} | {n2(lat['p90'])}"
                f" | {n2(lat['p99'])} | {n2(lat['max'])} | {pct(x.get('server_cpu_util'))}"
                f" | {pct(x['generator_cpu_util'])} | {pct(x.get('other_cpu_util'))}"
                f" | {pct(x.get('steal_util'))} | {windows} |"
            )
        c, f = g["ceiling"], g["floor"]
        lines += [
            "",
            f"Generator check: against a do-nothing asyncio HTTP server on the server's core, the same"
            f" generator and 50 connections reach {n0(c['ok_per_s'])} requests/s (generator CPU"
            f" {pct(c['generator_cpu_util'])}), {c['ok_per_s'] / max(h['baseline']['ok_per_s'], 1):.1f}x the"
            " baseline route's rate, so the generator is not what limits the figures above. The same"
            f" do-nothing server at {h['light_rate']:g} requests/s (open loop) answers in p50"
            f" {n2(f['latency_ms']['p50'])} ms, p99 {n2(f['latency_ms']['p99'])} ms: this machine's"
            " loopback latency floor. Why not wrk: every connection must cycle through its own"
            " conference's requests, which wrk's per-thread Lua hooks do not express.",
            "",
        ]
        if h.get("server_tracebacks"):
            lines += [f"The server logged {h['server_tracebacks']} traceback(s) during this figure.", ""]
        return lines

    def conference_section(self) -> list[str]:
        c = self.r.get("conferences")
        lines = ["### 2. Live conferences held at once (sim carrier)", ""]
        if (why := failed(c)) is not None:
            return [*lines, why, ""]
        assert c is not None
        cr = c["creation"]
        lines += [
            cmd(c) + ". " + figure_meta(c),
            "",
            f"A PHLO whose run dials agent and customer in parallel; {c['probes']} probe conferences, then"
            f" RSS of the idle server (/proc/<pid>/status VmRSS, after a warm-up load and 2 s of quiet) and"
            f" hold/unhold on the probes' customers at {c['light_rate']:g} requests/s (open loop, latency"
            " from"
            f" the intended send time). Then {n0(c['n'])} more conferences through the API (POST run, 20"
            " connections, distinct numbers), until all their members are connected; RSS again, and the"
            " same light load on the same probes. Per conference = (RSS after - RSS idle) / N. The server"
            " runs through bench/gcstats_serve.py, which records garbage-collector pauses per window.",
            "",
            "| | value |",
            "|---|---:|",
            f"| live conferences after creation | {n0(c['live_conferences'])} |",
            f"| members connected (or on hold) | {n0(c['connected_members'])} |",
            f"| RSS idle | {n0(c['rss_idle_kb'])} KB |",
            f"| RSS with the conferences live | {n0(c['rss_loaded_kb'])} KB |",
            f"| RSS delta per conference | {n0(c['bytes_per_conference'])} bytes |",
            f"| runs created per second (each: 2 dials, answered at once) | {n1(cr['ok_per_s'])} |",
            f"| run creation latency p50 / p99 (20 connections) | {n1(cr['latency_ms']['p50'])} /"
            f" {n1(cr['latency_ms']['p99'])} ms |",
            f"| time until all {n0(c['n'])} conferences were connected | {cr.get('until_all_connected_s')} s"
            " |",
            "",
            "| hold/unhold at light load | OK | not OK | p50 ms | p90 ms | p99 ms | max ms | GC pauses (gen:"
            " count,"
            " total ms, max ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, label in (("idle", "idle server"), ("loaded", f"{n0(c['n'])} conferences live")):
            x = c[key]
            lat = x["latency_ms"]
            gc = x.get("gc", {})
            gcs = "; ".join(
                f"{g}: {v['collections']}, {v['total_ms']}, {v['max_ms']}"
                for g, v in gc.items()
                if g in "012"
            )
            tracked = gc.get("objects", {}).get("tracked")
            lines.append(
                f"| {label} | {x['ok']} | {x['not_ok']} | {n2(lat['p50'])} | {n2(lat['p90'])} |"
                f" {n2(lat['p99'])}"
                f" | {n2(lat['max'])} | {gcs} ({n0(tracked)} objects tracked) |"
            )
        return [*lines, ""]

    def sip_section(self) -> list[str]:
        s = self.r.get("sip")
        lines = ["### 3 and 5. SIP: API request to INVITE, and call setups per second", ""]
        if (why := failed(s)) is not None:
            return [*lines, why, ""]
        assert s is not None
        a = s["api_to_invite"]
        lines += [
            cmd(s) + ". " + figure_meta(s),
            "",
            "**API -> INVITE.** `bridgeline serve --carrier sip` (pinned to CPU 1) with a trunk whose proxy"
            " is"
            " a minimal UAS in the benchmark process (CPU 0). A run connects an agent and a customer through"
            " the trunk; then, one at a time, a `call` action (raw HTTP/1.1 keep-alive) dials a number from"
            f" a pool of {s.get('pool', '?')}: time from just before the request is written to the INVITE's"
            " arrival at the UAS socket (same clock). The UAS answers 486, the member leaves, and the next"
            " call starts once the 486 is acknowledged (an idle server each time).",
            "",
            "| | n | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for key, label in (
            ("api_to_invite_ms", "API request -> INVITE on the wire"),
            ("api_answer_ms", "API request -> HTTP answer"),
        ):
            x = a[key]
            lines.append(
                f"| {label} | {x['n']} | {n2(x['p50'])} | {n2(x['p90'])} | {n2(x['p99'])} | {n2(x['max'])} |"
            )
        lines += [
            "",
            f"Other processes and steal took {pct(a.get('other_cpu_util', 0) + a.get('steal_util', 0))} of a"
            " core meanwhile (a run above 25% is repeated, 3 at most: p99 ms and disturbance of each:"
            f" {', '.join(f'({n2(p)}, {pct(d)})' for p, d in a.get('runs', []))}). "
            f"INVITE before the HTTP answer in {a['invite_before_http_answer']} of {a['calls']} calls;"
            f" missing INVITEs {a['missing_invites']}; non-201 answers {a['non_201']}.",
            "",
            *by_name_lines(s.get("api_to_invite_by_name")),
            "",
        ]
        st = s.get("setups", {})
        if "error" in st:
            return [*lines, f"**Setups per second** not measured: {st['error']}.", ""]
        lines += [
            "**Setups per second.** sipp (pinned to CPU 0) runs bench/sipp/uac_inbound.xml: INVITE with a"
            " PCMU offer to an inbound number whose PHLO run adopts the caller and dials nobody, [100],"
            f" [180], 200, ACK, {st['hold_ms']} ms pause, BYE, 200; each call's caller number is unique."
            f" Each step is {st['step_s']:g} s of calls (-r rate, -m rate x seconds, -recv_timeout 5 s) on a"
            " fresh server; a step passes with no failed call and >= 95% of the asked rate completed. The"
            " best passing rate is then sustained (terminated transactions linger 32 s, so short steps do"
            " not reach the steady state). INVITE->200 times come from sipp's -trace_rtt (1 ms resolution).",
            "",
            "| rate asked /s | calls | successful | failed | completed /s | INVITE->200 p50 / p99 ms | server"
            " CPU"
            " | server CPU per call ms | other CPU | passed |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        steps = list(st.get("steps", []))
        steps += [
            {**x, "rate": f"{x['rate']} (sustained {st.get('sustain_s', 0):g} s)"}
            for x in st.get("sustained") or []
        ]
        for x in steps:
            rt = x["invite_to_200_ms"]
            lines.append(
                f"| {x['rate']} | {x['calls']} | {x['successful']} | {x['failed']} |"
                f" {n1(x['completed_per_s'])}"
                f" | {n0(rt.get('p50'))} / {n0(rt.get('p99'))} | {pct(x['server_cpu_util'])}"
                f" | {n2(x['server_cpu_ms_per_call'])} | {pct(x.get('other_cpu_util'))} | {x.get('passed')} |"
            )
        return [*lines, ""]

    def rtp_section(self) -> list[str]:
        r = self.r.get("rtp")
        lines = ["### 4. Concurrent RTP legs per core", ""]
        if (why := failed(r)) is not None:
            return [*lines, why, ""]
        assert r is not None
        lines += [
            cmd(r) + ". " + figure_meta(r),
            "",
            "The MediaEngine runs in the benchmark process pinned to CPU 1; a sender process pinned to CPU 0"
            " sends one PCMU packet per leg every 20 ms (spread over 10 slots per period, as phones start at"
            " random phases) and drains what comes back. Legs are grouped into 2-, 10- and 100-party"
            " conferences (each member hears all others). A tick is late when it starts more than 5 ms"
            " after its deadline. Per setup N climbs a ladder ("
            + ", ".join(f"{n:,}" for n in kit_ladder(r))
            + " tried here) until >= 1% of ticks are late, then the midpoint is tried; a run that misses"
            " without saturating the core is repeated (3 runs at most) and the best kept. Engine and"
            " baseline run on the server's event loop (uvloop). The baseline is a bare UDP echo relay"
            " (one datagram transport per socket, one callback per datagram) on as many sockets, with an"
            " empty 20 ms ticker scheduled like the engine's. `legs/core by CPU` = 20,000 us / (engine"
            " CPU per leg per tick, lowest over runs at"
            ' full packet rate): what one core would carry if only CPU counted. The "other processes"'
            " column is CPU used by the rest of the machine during the window.",
            "",
            "| setup | largest N with < 1% late ticks | CPU us per leg-tick | legs/core by CPU |",
            "|---|---:|---:|---:|",
        ]
        for label, e in r["summary"].items():
            top = "" if e["largest_legs_under_1pct_late"] < e["ladder_top"] else " (ladder top)"
            lines.append(
                f"| {label} | {n0(e['largest_legs_under_1pct_late'])}{top} | {n1(e['cpu_us_per_leg_tick'])}"
                f" | {n0(e['legs_per_core_by_cpu'])} |"
            )
        lines += [
            "",
            "| setup | legs | late ticks % | max lateness ms | engine CPU % of a core | packets/s in |"
            " packets/s"
            " out | CPU us per leg-tick | sender CPU | other processes' CPU | sender late ticks | steal |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for x in r["runs"]:
            lines.append(
                f"| {x['label']} | {x['legs']} | {x['late_pct']:.2f} | {x['max_late_ms']:.1f}"
                f" | {100 * x['cpu_s'] / x['wall_s']:.0f}% | {n0(x['pps_in'])} | {n0(x['pps_out'])}"
                f" | {x['cpu_us_per_leg_tick']:.0f} | {100 * x['sender_cpu_s'] / x['wall_s']:.0f}%"
                f" | {100 * x['other_cpu_s'] / x['wall_s']:.0f}% | {x['sender_late']}"
                f" | {100 * x.get('steal_s', 0) / x['wall_s']:.0f}% |"
            )
        return [*lines, ""]

    def media_section(self) -> list[str]:
        m = self.r.get("media")
        lines = ["### 6. Mixer: one 20 ms tick for N members", ""]
        if (why := failed(m)) is not None:
            return [*lines, why, ""]
        assert m is not None
        lines += [
            cmd(m) + ". " + figure_meta(m),
            "",
            "Microseconds per call, best of 9 rounds, each round timing every kernel in turn, baseline"
            " included (pinned to CPU 1; numpy"
            f" {m.get('numpy', '?')}). Each member hears all the others. Baseline: numpy's sum(axis=0) of the"
            " same (N, 160) int16 array. Also: the general `deltas` kernel (each listener misses one more"
            " member), the stand-alone mix_minus() and matmul routing, and numpy's bare mix-minus without"
            " saturation (the floor of any numpy mix-minus).",
            "",
            "| N | numpy sum (baseline) | Mixer mix-minus | ratio | % of 20 ms | deltas | mix_minus() |"
            " matmul"
            " | bare numpy mix-minus |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for x in m["mixer"]:
            lines.append(
                f"| {x['n']} | {x['numpy_sum_us']} | {x['mixer_mix_minus_us']} | {x['ratio']}x"
                f" | {x['budget_share_pct']:.3f} | {x['mixer_deltas_us']} | {x['mix_minus_fn_us']}"
                f" | {x['matmul_us']} | {x['numpy_bare_mix_minus_us']} |"
            )
        b, leg = m.get("batched_two_party", {}), m.get("leg", {})
        lines += [
            "",
            f"{b.get('conferences')} two-party conferences: {b.get('separate_us')} us as separate Mixer"
            " calls,"
            f" {b.get('batched_us')} us as one vectorised mix ({b.get('speedup')}x). One leg's media work per"
            f" tick (parse, jitter push/pop, encode, serialise; no sockets): {leg.get('us_per_leg_tick')}"
            " us.",
            "",
        ]
        if m.get("wideband"):
            lines += [
                "G.722 (wideband) against G.711 (`bench/wideband_cost.py`, same run): 20 conferences of N"
                " members, each leg fed one RTP packet per tick, then the tick; CPU microseconds per leg and"
                " tick, best of 7 interleaved rounds, and legs per core (20 ms / that). `one G.722`: one"
                " leg per conference speaks G.722, so the conference is mixed at 16 kHz and its G.711 legs"
                " are resampled; `all G.722`: every leg is decoded and encoded by libg722.",
                "",
                "| N | G.711 µs (legs/core) | one G.722 µs (legs/core) | ratio | all G.722 µs (legs/core)"
                " | ratio |",
                "|---:|---:|---:|---:|---:|---:|",
            ]
            for w in m["wideband"]:
                lines.append(
                    f"| {w['members']} | {w['g711_us_per_leg_tick']} ({n0(w['g711_legs_per_core'])})"
                    f" | {w['one_g722_us_per_leg_tick']} ({n0(w['one_g722_legs_per_core'])})"
                    f" | {w['one_g722_ratio']}x"
                    f" | {w['all_g722_us_per_leg_tick']} ({n0(w['all_g722_legs_per_core'])})"
                    f" | {w['all_g722_ratio']}x |"
                )
            if "all_opus_us_per_leg_tick" in m["wideband"][0]:
                lines += [
                    "",
                    "Opus in the same run (`one Opus`, `all Opus`: as above with Opus legs, 20 ms packets"
                    " decoded to and encoded from 16 kHz by libopus):",
                    "",
                    "| N | G.711 µs | one Opus µs (legs/core) | ratio | all Opus µs (legs/core) | ratio |",
                    "|---:|---:|---:|---:|---:|---:|",
                ]
                for w in m["wideband"]:
                    lines.append(
                        f"| {w['members']} | {w['g711_us_per_leg_tick']}"
                        f" | {w['one_opus_us_per_leg_tick']} ({n0(w['one_opus_legs_per_core'])})"
                        f" | {w['one_opus_ratio']}x"
                        f" | {w['all_opus_us_per_leg_tick']} ({n0(w['all_opus_legs_per_core'])})"
                        f" | {w['all_opus_ratio']}x |"
                    )
            lines.append("")
        return lines

    def profiles_section(self) -> list[str]:
        lines = [
            "## Profiles: where the time goes",
            "",
            "py-spy (`py-spy record --format raw`, attached by pid) during separate runs of the same loads:"
            " py-spy stops the process for each sample, so these runs are slower and are not the measured"
            " ones. Shares are of the samples of the event-loop thread. Raw collapsed stacks are in the"
            " profile directory printed by run_all.py (flamegraph-ready).",
            "",
        ]
        h = self.get("http") or {}
        hp = h.get("profiles", {})
        for key, title in (
            ("member_actions", "HTTP action path: hold / unhold (50 clients)"),
            ("mpc_actions", "HTTP action path: call / hangup (50 clients)"),
            ("baseline", "HTTP baseline route: GET /v1/phlo/{id}"),
        ):
            p = hp.get(key)
            note = f"{n0((p or {}).get('ok_per_s_while_sampled'))} answers/s while sampled."
            lines += profile_block(title, p, note)
        r = self.get("rtp") or {}
        for key, p in (r.get("profiles") or {}).items():
            note = f"{p.get('late_pct_while_sampled')}% late ticks while sampled."
            lines += profile_block(f"RTP tick: {key}", p, note)
        s = self.get("sip") or {}
        sp = s.get("profiles") or {}
        if sp.get("setups"):
            p = sp["setups"]
            note = (
                f"sipp at {p.get('rate')}/s for {p.get('seconds')} s;"
                f" {n1(p.get('completed_per_s_while_sampled'))} calls/s completed,"
                f" {p.get('failed_while_sampled')} failed while sampled."
            )
            lines += profile_block("SIP inbound call setups (sipp)", p, note)
        if sp.get("call_action"):
            p = sp["call_action"]
            lines += profile_block(
                "`call` action to INVITE (sip carrier; sampled at 1 kHz)",
                p,
                "Shares only: sampling slows it.",
            )
        return lines

    def render(self) -> str:
        self.http_rows()
        self.conference_rows()
        self.invite_rows()
        self.rtp_rows()
        self.setup_rows()
        self.held_rows()
        self.row(*tls_row(self.get("tls")))
        self.mixer_rows()
        self.outbox_rows()
        self.tick_rows()
        machine = next((r["machine"] for r in self.r.values() if "machine" in r), kit.machine())
        suite = self.suite
        lines = [
            "# Benchmarks",
            "",
            f"Generated by `make bench` (`bench/run_all.py`), {suite['finished_at']}. Every figure is"
            " measured with its baseline in the same run, on the machine below; the published anchors are"
            " labelled as such. Nothing here is a wall-clock assertion: these are measurements, not tests."
            " One figure can be rerun with e.g. `make bench BENCH_ONLY=rtp` (the others are kept); the last"
            f" invocation ran {', '.join(suite.get('figures_run') or []) or '?'}"
            + (
                "; the other figures come from an earlier run of the suite (each figure gives its date)."
                if set(suite.get("figures_run") or []) != set(FIGURES)
                else "."
            ),
            "",
            "## Machine",
            "",
            "| CPU | cores | MHz | memory | kernel | Python |",
            "|---|---:|---:|---:|---|---|",
            f"| {machine['cpu_model']} | {machine['cores']} | {n0(machine.get('cpu_mhz'))} |"
            f" {machine['memory_gb']} GB | {machine['kernel']} | {machine['implementation']}"
            f" {machine['python']} |",
            "",
            "Load average (1/5/15 min) at the start of the last invocation"
            f" {load(suite['loadavg_start'])}, at its end {load(suite['loadavg_end'])}; each figure lists"
            " its own. The server (or the media engine) runs"
            f" pinned to CPU {kit.SERVER_CPU} (`taskset -c {kit.SERVER_CPU}`) and every load generator (HTTP,"
            f' sipp, the RTP sender, the UAS) on CPU {kit.LOAD_CPU}, so "per core" means one core. This'
            " machine is a 2-vCPU VM shared with other work: each window reports the CPU that other"
            ' processes used meanwhile ("other CPU") and hypervisor steal, and disturbed windows are'
            " retried (HTTP windows and sipp steps when other processes plus steal took > 25% of a core;"
            " RTP runs that miss).",
            "",
            "## Results against the targets",
            "",
            "| Figure | Measured | Baseline (same run) | Ratio | Target | Met |",
            "|---|---|---|---|---|---|",
            *self.rows,
            "",
            *self.anchors(),
            "## Figures in detail",
            "",
            *self.http_section(),
            *self.conference_section(),
            *self.sip_section(),
            *held_section(self.r.get("held")),
            *tls_section(self.r.get("tls")),
            *self.rtp_section(),
            *self.media_section(),
            *self.outbox_section(),
            *self.tick_section(),
            *self.profiles_section(),
            "## Targets not reached: where the time goes, and proposed changes",
            "",
        ]
        if not self.unmet:
            lines += ["Every target was reached in this run.", ""]
        for title, advice in self.unmet:
            lines += [f"### {title}", "", *advice(), ""]
        lines += [
            "## What could not be measured, and why",
            "",
            *[f"- {x}" for x in self.not_measured],
            "- **A real network.** Everything runs on loopback: a UDP send on loopback also runs the"
            " receiver's kernel path in the sender's syscall, so per-packet costs here are not those of a"
            " NIC, and no packet is ever lost or reordered.",
            "- **Throughput beyond one core.** Bridgeline is one process with one event loop; the figures"
            " are per core by construction (server pinned). Several processes sharing PostgreSQL were not"
            " benchmarked (the targets name the durable SQLite store).",
            "- **Steady numbers on this machine.** It is a shared 2-vCPU VM: the other-CPU and steal"
            " columns show how much each window was disturbed. Latency percentiles in particular move"
            " between runs (cross-core wake-ups cost up to milliseconds here: see the loopback floor).",
            "- **SIP setups with media.** sipp calls carry no RTP from sipp's side and hold for"
            " --hold-ms (0 here), so the setup figure is signalling plus the conference life cycle; media"
            " load is the RTP figure's subject.",
            '- **A reproducible "largest N" for RTP legs.** The < 1% late-tick criterion reacts to'
            " stalls of the whole VM (see the steal and other-CPU columns): a few stalls in a 6 s run are"
            " enough to miss it, for the engine and the bare relay alike. The CPU-based capacity (CPU per"
            " leg-tick) varies much less between runs, so both are reported.",
            "- **Native frames in the profiles.** uvloop's event loop and httptools' parser are C"
            " extensions: py-spy (without --native) attributes their time to the Python frame that called"
            " them, or shows the loop's own time as the runner's frame.",
            "- **Profiles are separate runs.** py-spy pauses the target for each sample (its non-blocking"
            " mode tears stacks), so profiles come from repeated loads, not from the measured windows.",
            "",
        ]
        return "\n".join(lines)


def main(names: list[str], out: Path, results: Path, profiles: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    profiles.mkdir(parents=True, exist_ok=True)
    load0 = kit.loadavg()
    for name in names:
        run_figure(name, results, profiles)
    collected: dict[str, dict[str, Any]] = {}
    for name in FIGURES:
        path = results / f"{name}.json"
        if path.exists():
            collected[name] = dict(json.loads(path.read_text()))
    suite_path = results / "suite.json"
    if names:
        suite = {
            "loadavg_start": load0,
            "loadavg_end": kit.loadavg(),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "figures_run": names,
        }
        suite_path.write_text(json.dumps(suite, indent=2))
    elif suite_path.exists():  # --report-only: the last invocation that ran figures
        suite = dict(json.loads(suite_path.read_text()))
    else:
        suite = {"loadavg_start": None, "loadavg_end": None, "finished_at": "?", "figures_run": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(Report(collected, suite).render())
    print(f"wrote {out} (results in {results}, profiles in {profiles})", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(FIGURES)}")
    parser.add_argument("--out", type=Path, default=kit.ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--results", type=Path, default=Path("/tmp/bridgeline-bench/results"))
    parser.add_argument("--profiles", type=Path, default=Path("/tmp/bridgeline-bench/profiles"))
    parser.add_argument("--report-only", action="store_true", help="write the report from --results only")
    opts = parser.parse_args()
    names = list(FIGURES) if opts.only is None else opts.only.split(",")
    if unknown := set(names) - set(FIGURES):
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    main([] if opts.report_only else names, opts.out, opts.results, opts.profiles)
