"""The report's figure for bench/bench_sip_held.py: SIP setups/s and API -> INVITE with calls held up.

Kept out of run_all.py (already long): `held_row` gives the summary table's row, `held_section` the
section under "Figures in detail". Both take the JSON that bench_sip_held.py writes.
"""

from __future__ import annotations

from typing import Any

from report_format import cmd, failed, figure_meta, n0, n1, n2, pct, profile_block

TARGET_RATE = 200  # setups/s with no failed call while the calls are held (issue #10)


def _best(phase: dict[str, Any]) -> int | None:
    setups = phase.get("setups")
    return None if setups is None else int(setups["best_rate_without_failure"])


def _p99(phase: dict[str, Any]) -> float | None:
    value = phase.get("api_to_invite", {}).get("api_to_invite_ms", {}).get("p99")
    return None if value is None else float(value)


def _top(phase: dict[str, Any]) -> str:
    steps = phase.get("setups", {}).get("steps") or [{"rate": 0}]
    best = _best(phase) or 0
    return " (the ladder's top: more not tried)" if best and best >= max(x["rate"] for x in steps) else ""


def held_ok(r: dict[str, Any]) -> bool:
    held = r["held"]
    return bool(
        (_best(held) or 0) >= TARGET_RATE
        and held.get("held_check", {}).get("held_throughout", False)
        and not held.get("error")
    )


def held_row(r: dict[str, Any] | None) -> tuple[str, str, str, str, str, bool | None]:
    """(figure, measured, baseline, ratio, target, met) for the summary table."""
    figure = "SIP setups/s and API -> INVITE p99 while calls are held up (sip carrier)"
    target = f">= {TARGET_RATE}/s with no failed call (held calls included)"
    if r is None or "error" in r:
        return figure, "not measured", "-", "-", target, None
    held, base = r["held"], r["baseline"]
    count = held["held"]
    if held.get("error"):
        return figure, f"{count} held: {held['error']}", "-", "-", target, False
    check = held.get("held_check", {})
    measured = (
        f"{n0(count)} calls held ({held['media']} SDP; {check.get('FailedCall', '?')} failed):"
        f" {_best(held)}/s{_top(held)}; API -> INVITE p99 {n2(_p99(held))} ms"
    )
    baseline = f"0 held: {_best(base)}/s{_top(base)}; p99 {n2(_p99(base))} ms"
    ratios = r.get("ratios", {})
    ratio = (
        f"setups x{n2(ratios.get('setups_held_over_baseline'))};"
        f" p99 x{n2(ratios.get('api_to_invite_p99_held_over_baseline'))}"
    )
    return figure, measured, baseline, ratio, target, held_ok(r)


def held_section(r: dict[str, Any] | None) -> list[str]:
    lines = ["### 3 and 5 with calls held up: SIP setups/s and API -> INVITE (sip carrier)", ""]
    if (why := failed(r)) is not None:
        return [*lines, why, ""]
    assert r is not None
    held = r["held"]
    files = r.get("open_files", {})
    raised = (
        ""
        if files.get("soft") == files.get("soft_before")
        else f" (raised from {n0(files.get('soft_before'))})"
    )
    lines += [
        cmd(r) + ". " + figure_meta(r),
        "",
        f"Phases of the same run, each on a fresh `bridgeline serve --carrier sip` (CPU 1; RTP ports"
        f" {r.get('rtp_ports')}; open-file soft limit {n0(files.get('soft'))}{raised}, for"
        f" {n0(files.get('needed'))} needed): the baseline with no call held, then"
        f" {n0(held['held'])} calls held up. The held calls come from a first sipp"
        " (bench/sipp/uac_inbound_hold.xml) calling the inbound number until all are established; each is"
        f" a one-member conference that hears wait music, offered with `a={held.get('media')}`"
        " (inactive: a call on hold, no RTP either way, so the media tick does not eat the core that"
        " signalling is measured on; bench_sip_held.py's docstring says why). Then, on the same server,"
        " a second sipp steps through the rates (bench/sipp/uac_inbound.xml; steps share the server, so"
        " later steps also carry the earlier ones' lingering transactions), and API -> INVITE is"
        " measured as in the section above. The last phase, if run, holds the same calls with music"
        " streamed to them (`a=sendrecv`), to show what the media costs.",
        "",
        "| | held calls | server CPU, calls held, nothing else | RSS MB | late / skipped media ticks"
        " | RTP packets out /s | best rate without a failed call | API -> INVITE p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    phases = [("baseline", r["baseline"]), (f"held, a={held.get('media')}", held)]
    if r.get("held_sendrecv"):
        phases.append(("held, a=sendrecv: music streamed (no steps)", r["held_sendrecv"]))
    for label, phase in phases:
        if phase.get("error"):
            lines.append(f"| {label} | {n0(phase['held'])} | {phase['error']} | | | | | |")
            continue
        idle = phase.get("held_idle", {})
        api = phase.get("api_to_invite", {}).get("api_to_invite_ms", {})
        lines.append(
            f"| {label} | {n0(phase['held'])} | {pct(idle.get('server_cpu_util'))} | {n1(idle.get('rss_mb'))}"
            f" | {idle.get('late_ticks', '-')} / {idle.get('skipped_ticks', '-')}"
            f" | {n0(idle.get('rtp_packets_out_per_s'))}"
            f" | {'not measured' if _best(phase) is None else f'{_best(phase)}/s{_top(phase)}'}"
            f" | {n2(api.get('p50'))} / {n2(api.get('p99'))} |"
        )
    ramp, check = held.get("ramp", {}), held.get("held_check", {})
    lines += [
        "",
        f"Held calls: {n0(ramp.get('established'))} established at {ramp.get('rate')}/s in"
        f" {ramp.get('ramp_s')} s; after the measurements sipp still counted {n0(check.get('CurrentCall'))}"
        f" current, {check.get('FailedCall', '?')} failed"
        f" ({'held throughout' if check.get('held_throughout') else 'NOT held throughout'}).",
        "",
        "| phase | rate asked /s | calls | failed | completed /s | INVITE->200 p50 / p99 ms | server CPU"
        " | server CPU per call ms | other CPU | passed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, phase in (("baseline", r["baseline"]), ("held", held)):
        for x in phase.get("setups", {}).get("steps", []):
            rt = x["invite_to_200_ms"]
            lines.append(
                f"| {label} | {x['rate']} | {x['calls']} | {x['failed']} | {n1(x['completed_per_s'])}"
                f" | {n0(rt.get('p50'))} / {n0(rt.get('p99'))} | {pct(x['server_cpu_util'])}"
                f" | {n2(x['server_cpu_ms_per_call'])} | {pct(x.get('other_cpu_util'))} | {x.get('passed')} |"
            )
    lines.append("")
    profiles = held.get("profiles")
    if profiles:
        lines += profile_block(
            f"Server with {n0(held['held'])} calls held, nothing else happening",
            profiles.get("idle"),
            "Sampled at 100 Hz after the measurements.",
        )
        setups = profiles.get("setups") or {}
        lines += profile_block(
            f"Server with {n0(held['held'])} calls held and setups at {setups.get('rate')}/s",
            setups,
            f"{setups.get('failed_while_sampled', '?')} failed while sampled.",
        )
    return lines


def _top_self(profile: dict[str, Any] | None, top: int = 6) -> str:
    if not profile or not profile.get("samples"):
        return "not profiled"
    return ", ".join(f"`{name}` {share:.0f}%" for name, share in profile.get("self", [])[:top])


def held_advice(r: dict[str, Any]) -> list[str]:
    """Where the time goes when the target is missed with calls held, and what would change it."""
    held, base = r["held"], r["baseline"]
    idle = held.get("held_idle", {})
    profiles = held.get("profiles") or {}
    passed = [x for x in held.get("setups", {}).get("steps", []) if x.get("passed")]
    passed_base = [x for x in base.get("setups", {}).get("steps", []) if x.get("passed")]
    cost = min((x["server_cpu_ms_per_call"] for x in passed), default=None)
    cost_base = min((x["server_cpu_ms_per_call"] for x in passed_base), default=None)
    return [
        f"With {n0(held['held'])} calls held and nothing else happening, the server used"
        f" {pct(idle.get('server_cpu_util'))} of its core (`a={held.get('media')}`: no RTP sent)."
        f" Server CPU per set-up call: {n2(cost)} ms with the calls held, {n2(cost_base)} ms without.",
        "",
        f"Hottest functions, calls held, idle: {_top_self(profiles.get('idle'))}. With setups:"
        f" {_top_self(profiles.get('setups'))}.",
        "",
        "Done after this benchmark's first profiles: a leg that sends nothing (inactive, recvonly) costs"
        " the tick no mixing or encoding; the tick layout is patched per conference (`media/layout.py`);"
        " music in use is counted, not collected from every conference; `EndpointCore.drop` unmaps a"
        " leg's own dialogs (`bench/setup_cost.py` measures each at 10 vs 2,000 calls up); a shared music"
        " frame is encoded once per codec per tick, not once per listener (docs/optimisations.md).",
    ]
