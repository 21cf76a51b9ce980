"""The report's media-tick figure (bench_tick_isolation.py): its summary rows, its section and the
advice when its target is missed; run_all.Report builds on it (run_all.py is long enough)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from report_advice import Advice
from report_format import cmd, failed, figure_meta, n0, n1, n2, pct

TARGET = "p99 lateness < 5 ms and no gap > 60 ms, quiet and under load"
PHASES = (("quiet", "quiet"), ("api", "full API load"))


def server_ticks(counters: dict[str, float]) -> tuple[float | None, float | None, float | None]:
    """(ticks, late ticks, skipped ticks) from the server's /metrics counters, whatever the engine
    calls its subsystem: the names end in media_ticks_total, media_late_ticks_total, ..."""

    def find(suffix: str) -> float | None:
        return next((v for k, v in counters.items() if k.endswith(suffix)), None)

    return find("_media_ticks_total"), find("_media_late_ticks_total"), find("_media_skipped_ticks_total")


def _lat(p: dict[str, Any]) -> str:
    lat = p["lateness_ms"]
    gap = f"longest gap {n1(p['longest_gap_ms'])} ms ({p['gaps_over_60ms']} > 60 ms)"
    return f"p99 {n2(lat.get('p99'))} ms, {gap}"


class TickReport(Advice):
    unmet: list[tuple[str, Callable[[], list[str]]]]
    row: Callable[[str, str, str, str, str, bool | None], None]  # run_all.Report's summary row

    def tick_rows(self) -> None:
        t = self.get("tick")
        if t is None:
            self.row("Media tick under full API load (sip)", "not measured", "-", "-", TARGET, None)
            return
        missed = False
        for load in t["loads"]:
            quiet, api = load["phases"]["quiet"], load["phases"]["api"]
            ok = bool(quiet["target_met"] and api["target_met"])
            missed |= not ok
            p99q, p99a = quiet["lateness_ms"].get("p99"), api["lateness_ms"].get("p99")
            self.row(
                f"Media tick, one {load['parties']}-party conference, under full API load (sip carrier;"
                " RTP seen by the peers)",
                f"{_lat(api)}; API {n0(api['api']['ok_per_s'])} requests/s",
                f"quiet, same server: {_lat(quiet)}",
                f"p99 x{p99a / max(p99q, 1e-9):.1f}" if p99q is not None and p99a is not None else "-",
                TARGET,
                ok,
            )
        if missed:
            self.unmet.append(("Media tick lateness under API load", self.tick_advice))

    def tick_section(self) -> list[str]:
        t = self.r.get("tick")
        lines = ["### 8. Media tick lateness and RTP gaps, quiet and under full API load (sip carrier)", ""]
        if (why := failed(t)) is not None:
            return [*lines, why, ""]
        assert t is not None
        lines += [
            cmd(t) + ". " + figure_meta(t),
            "",
            "Measured from outside the server: `bridgeline serve --carrier sip` (SQLite, CPU 1) with a"
            " trunk to the benchmark's UAS; one PHLO run and `call` actions put N members into one"
            " conference, each answered with its own UDP socket. A peer process (CPU 0) sends every leg a"
            " 20 ms PCMU tone and records when each RTP packet from the server arrives (kernel receive"
            " timestamps, so the peer's own scheduling is not in them). Per leg, packet k is due at t0 +"
            " 20 ms x k, t0 fitted as the least-delayed packet: lateness is the outside view of the tick's"
            f" lateness (late = > {t['late_threshold_ms']:g} ms); a gap is the time between two packets of"
            f" one leg. Phase A: {t['phase_s']:g} s quiet; phase B: {t['phase_s']:g} s of the HTTP API at"
            f" full rate on the same server (closed loop, {t['connections']} keep-alive connections, one"
            f" request in flight each: {t['hold_connections']} alternate hold / unhold in their own"
            " 2-member side conference, the rest GET the measured members' state, the node and the"
            " PHLO). Server ticks are the server's own `/metrics` counters over each phase (phase B:"
            " around the whole load, ramp included). Each load runs on a fresh server.",
            "",
            "| conference | phase | packets (expected) | lateness p50 / p99 / max ms | late packets"
            " | longest gap ms | gaps > 60 ms | skipped ticks seen | server ticks: late / skipped / all"
            " | API OK/s (p99 ms) | server CPU | other CPU | met |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for load in t["loads"]:
            for key, label in PHASES:
                p = load["phases"][key]
                lat = p["lateness_ms"]
                ticks, late, skipped = server_ticks(p.get("server_counters", {}))
                api = p.get("api")
                api_text = f"{n0(api['ok_per_s'])} ({n1(api['latency_ms']['p99'])})" if api else "-"
                lines.append(
                    f"| {load['parties']}-party | {label} | {n0(p['packets'])} ({n0(p['expected_packets'])})"
                    f" | {n2(lat.get('p50'))} / {n2(lat.get('p99'))} / {n1(lat.get('max'))}"
                    f" | {p['late_packets']} ({n1(p['late_pct'])}%) | {n1(p['longest_gap_ms'])}"
                    f" | {p['gaps_over_60ms']} | {p['skipped_ticks_seen']:g}"
                    f" | {n0(late)} / {n0(skipped)} / {n0(ticks)} | {api_text} | {pct(p['server_cpu_util'])}"
                    f" | {pct(p.get('other_cpu_util'))} | {'yes' if p['target_met'] else '**no**'} |"
                )
        lines += [
            "",
            "The same packets stamped by the peer after recvmsg (its own wake-up delays included), p99 /"
            " max lateness ms: "
            + "; ".join(
                f"{load['parties']}-party {label} {n2(user.get('p99'))} / {n1(user.get('max'))}"
                for load in t["loads"]
                for key, label in PHASES
                for user in [load["phases"][key]["user_clock"]["lateness_ms"]]
            )
            + ".",
            "",
        ]
        return lines

    def tick_advice(self) -> list[str]:
        t = self.get("tick")
        assert t is not None
        lines = []
        for load in t["loads"]:
            q, a = load["phases"]["quiet"], load["phases"]["api"]
            lines.append(
                f"- {load['parties']}-party: quiet {_lat(q)}; under load {_lat(a)}, with the API answering"
                f" {n0(a['api']['ok_per_s'])} requests/s and other processes taking"
                f" {pct(a.get('other_cpu_util'))} of a core."
            )
        return [
            "The media tick runs on the event loop that also serves the HTTP API: under a closed-loop API"
            " load every request handler, store commit and response write that is running when a tick is"
            " due delays it, so lateness grows with the API's busiest stretches, not with the media work.",
            "",
            *lines,
            "",
            "Proposed change (issue #10): run the media tick in its own thread (its sockets, jitter buffers"
            " and mixing touched only there; route changes handed over through a queue): when a tick is"
            " due, that thread gets the interpreter within the switch interval (5 ms by default,"
            " sys.setswitchinterval) instead of waiting for the loop's current callback to finish. This"
            " benchmark measures from outside, so it runs unchanged against that engine.",
        ]
