"""Formatting helpers shared by the benchmark report (run_all.py) and its advice (report_advice.py)."""

from __future__ import annotations

from typing import Any


def n0(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def n1(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def n2(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def load(la: Any) -> str:
    return "/".join(f"{v:.2f}" for v in la) if la else "-"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def cmd(r: dict[str, Any]) -> str:
    return f"`{r.get('command', '?')}`"


def figure_meta(r: dict[str, Any]) -> str:
    q = r.get("quiet_before") or {}
    waited = (
        f" Before it, the suite waited {q['waited_s']:g} s (30 s at most) for other work and steal to take"
        f" < 0.25 core (last seen: {q['busy_cores']:g} core busy, {q.get('steal', 0):g} stolen)."
        if q
        else ""
    )
    return (
        f"Ran {r.get('started_at', '?')} for {r.get('duration_s', '?')} s; load average (1/5/15 min)"
        f" {load(r.get('loadavg_start'))} at start, {load(r.get('loadavg_end'))} at end.{waited}"
    )


def failed(r: dict[str, Any] | None) -> str | None:
    if r is None:
        return "not run"
    if "error" in r:
        return f"failed ({r['error']}); stderr tail:\n\n```\n{r.get('stderr_tail', '')[-1500:]}\n```"
    return None


def profile_block(title: str, p: dict[str, Any] | None, note: str, top: int = 10) -> list[str]:
    if not p or "error" in p:
        return [f"#### {title}", "", f"Not profiled: {(p or {}).get('error', 'no profile')}.", ""]
    lines = [f"#### {title}", "", f"{p['samples']} samples (event-loop thread). {note}", ""]
    lines += ["| where the time goes (innermost frame) | % of samples |", "|---|---:|"]
    lines += [f"| {name} | {share:.1f} |" for name, share in p.get("categories", [])[:8]]
    lines += ["", "| hottest functions (self time; C calls count for their caller) | % |", "|---|---:|"]
    lines += [f"| `{name}` | {share:.1f} |" for name, share in p.get("self", [])[:top]]
    lines.append("")
    return lines
