"""The report's figure for bench/bench_sip_tls.py: SIP call setups/s over TLS (and TCP) against UDP.

Kept out of run_all.py (already long): `tls_row` gives the summary table's row, `tls_section` the
section under "Figures in detail". Both take the JSON that bench_sip_tls.py writes.
"""

from __future__ import annotations

from typing import Any

from report_format import cmd, failed, figure_meta, n0, n1, n2, pct

FIGURE = "SIP call setups/s over TLS vs UDP (16 Python callers; sip carrier)"


def tls_row(r: dict[str, Any] | None) -> tuple[str, str, str, str, str, bool | None]:
    """(figure, measured, baseline, ratio, target, met) for the summary table."""
    if r is None or "error" in r:
        return FIGURE, "not measured", "-", "-", "ratio reported", None
    best = r["best"]
    tls, udp = best["tls"], best["udp"]

    def text(x: dict[str, Any]) -> str:
        return (
            f"{n1(x['setups_per_s'])}/s ({x['failed']} failed), server CPU {n2(x['server_cpu_ms_per_call'])}"
            f" ms/call, INVITE->200 p99 {n1(x['invite_to_200_ms'].get('p99'))} ms"
        )

    ratio = f"setups x{n2(r['ratio_tls_vs_udp'])}; server CPU/call x{n2(r['cpu_ratio_tls_vs_udp'])}"
    ok = tls["failed"] == 0 and udp["failed"] == 0
    return FIGURE, f"TLS: {text(tls)}", f"UDP: {text(udp)}", ratio, "ratio reported; no failed call", ok


def tls_section(r: dict[str, Any] | None) -> list[str]:
    lines = ["### SIP over TLS and TCP against UDP: call setups per second", ""]
    if (why := failed(r)) is not None:
        return [*lines, why, ""]
    assert r is not None
    lines += [
        cmd(r) + ". " + figure_meta(r),
        "",
        "Each transport gets a fresh `bridgeline serve --carrier sip` (CPU 1) listening on UDP, TCP and"
        " TLS (an openssl-made certificate), with the inbound route of the setups figure above (each call"
        " is a one-member conference, ended by the caller's BYE). The callers are bench_sip_tls.py itself"
        f" (CPU 0): {r['concurrency']} calls at a time in a closed loop (INVITE, 100/180/200, ACK, BYE, 200)"
        f" for {r['seconds']:g} s after a warm-up, all over one UDP socket or one TCP/TLS connection (the"
        " TLS handshake is paid once, as with a trunk). Debian's sipp has no TLS, hence a Python caller,"
        " the same for the three transports. When the server CPU column is below 100%, the caller was"
        " the bound (on a busy machine it is), and the ratio that speaks for the server is its CPU per"
        " call. Transports are run in interleaved rounds; per transport the best round is kept. The other"
        " CPU column includes these callers; on a busy machine rounds vary, CPU per call much less.",
        "",
        "| transport | setups/s | failed | INVITE->200 p50 / p99 ms | server CPU | server CPU per call ms"
        " | other CPU | vs UDP: setups / CPU per call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    udp = r["best"]["udp"]
    for name in ("udp", "tcp", "tls"):
        x = r["best"][name]
        rt = x["invite_to_200_ms"]
        setups = x["setups_per_s"] / udp["setups_per_s"] if udp["setups_per_s"] else 0.0
        cpu = (
            x["server_cpu_ms_per_call"] / udp["server_cpu_ms_per_call"]
            if udp["server_cpu_ms_per_call"]
            else 0.0
        )
        lines.append(
            f"| {name.upper()} | {n1(x['setups_per_s'])} | {x['failed']}"
            f" | {n1(rt.get('p50'))} / {n1(rt.get('p99'))} | {pct(x['server_cpu_util'])}"
            f" | {n2(x['server_cpu_ms_per_call'])} | {pct(x.get('other_cpu_util'))}"
            f" | x{n2(setups)} / x{n2(cpu)} |"
        )
    rounds = ", ".join(
        f"{name.upper()} " + " / ".join(n0(x["setups_per_s"]) for x in r["runs"][name])
        for name in ("udp", "tcp", "tls")
    )
    lines += ["", f"Setups/s of every round: {rounds}.", ""]
    return lines
