"""The report's "targets not reached" advice: where the time goes, and the proposed changes.

Each method turns one figure's results and profile into prose; run_all.Report mixes this in and
calls a method only for a target that was missed in the run. What was already done is in
docs/optimisations.md; the text here says what is left and what would change it.
"""

from __future__ import annotations

import json
from typing import Any

from report_format import n0, n1, n2, pct


def shares(p: dict[str, Any], top: int = 7) -> str:
    return ", ".join(f"{name} {share:.0f}%" for name, share in p.get("categories", [])[:top])


class Advice:
    r: dict[str, dict[str, Any]]
    unmet_keys: set[str]

    def get(self, name: str) -> dict[str, Any] | None:
        r = self.r.get(name)
        return None if r is None or "error" in r else r

    def latency_floor(self) -> str:
        h = self.get("http")
        if h is None:
            return "not measured"
        f = h["generator"]["floor"]["latency_ms"]
        return f"p50 {n2(f['p50'])} ms, p99 {n2(f['p99'])} ms"

    def prof(self, fig: str, key: str) -> dict[str, Any]:
        r = self.get(fig) or {}
        return dict((r.get("profiles") or {}).get(key) or {})

    def http_advice(self, key: str) -> list[str]:
        h = self.get("http")
        assert h is not None
        p = self.prof("http", key)
        cat = dict(p.get("categories", []))
        x, base, ceiling = h[key], h["baseline"], h["generator"]["ceiling"]
        per_action = 1000 * x["server_cpu_util"] / max(x["ok_per_s"], 1)
        per_base = 1000 * base["server_cpu_util"] / max(base["ok_per_s"], 1)
        what = "hold/unhold" if key == "member_actions" else "call/hangup"
        beyond = per_action - per_base
        store = cat.get("store: SQLite calls, rows (adapters/store)", 0) / 100 * per_action
        core = cat.get("conference core (bridgeline.core)", 0) / 100 * per_action
        head = [
            f"The server's core is the limit: {pct(x['server_cpu_util'])} busy during the {what} window,"
            f" {1000 * per_action:.0f} us of CPU per action against {1000 * per_base:.0f} us for the"
            f" trivial route ({per_action / max(per_base, 1e-9):.1f}x); the generator used"
            f" {pct(x['generator_cpu_util'])} of its core and reaches {n0(ceiling['ok_per_s'])}/s against a"
            " do-nothing server, so it does not limit the figure. 50% of the baseline's throughput means an"
            " action may cost at most twice the trivial route: here the work beyond the HTTP floor is"
            f" {1000 * beyond:.0f} us per action, against a floor of {1000 * per_base:.0f} us.",
            "",
            f"Where an action's time goes ({what} profile): {shares(p)}. That is about"
            f" {1000 * store:.0f} us in the store (the action's rows plus its share of a group commit) and"
            f" {1000 * core:.0f} us in the conference engine, each already cut several times over"
            " (docs/optimisations.md): the trivial route's whole cost is of the same order as either.",
            "",
        ]
        if key != "member_actions" and "member_actions" in self.unmet_keys:
            return [*head, "The proposed changes are those of the member actions above."]
        return [
            *head,
            f"To reach 50% an action must shed {1000 * (per_action - 2 * per_base):.0f} us of its"
            f" {1000 * per_action:.0f} us (the store alone takes {1000 * store:.0f} us). Every action is"
            " a durable state change: it validates the request, runs the pure engine, serialises the"
            " new state and commits it before answering; the trivial"
            " route does none of that, and httptools + uvloop (which made every request cheaper) cut the"
            " floor by more than they cut the actions. In the store, each group commit writes one page"
            " per conference touched (its whole snapshot row) plus the event pages, so a commit's WAL"
            " writes grow with the conferences in the batch. Proposed changes of design:",
            "- **Compile the pure core** (core/ and the snapshot codec) with mypyc: it is already strictly"
            " typed, pure and exhaustively tested, which is what mypyc needs; compiled dataclass-heavy code"
            " typically runs 2-4x faster, acting on the engine's share above.",
            "- **Append, don't rewrite**: commit only the action's event rows (and outbox rows) per action,"
            " and write the conference snapshot every N events or when the conference goes idle; restore"
            " replays the events after the last snapshot. This removes the snapshot upsert from each action.",
            "- **ASGI without Starlette objects on the action routes** (path parameters and body straight"
            " from scope/receive; the body reading already does this): a share of the HTTP adapter and"
            " Starlette rows, though it also cheapens the trivial route, so it helps the rate more than the"
            " ratio.",
            "- Several processes (SO_REUSEPORT) would scale the absolute rate with cores, not the per-core"
            " ratio the target asks for.",
        ]

    def conference_advice(self) -> list[str]:
        c = self.get("conferences")
        assert c is not None
        gc_loaded = c["loaded"].get("gc", {})
        return [
            f"Memory per conference {n1(c['bytes_per_conference'] / 1024)} KB; p99 of hold/unhold at"
            f" {c['light_rate']:g}/s went from {n1(c['idle']['latency_ms']['p99'])} ms (idle) to"
            f" {n1(c['loaded']['latency_ms']['p99'])} ms with {n0(c['live_conferences'])} live conferences.",
            f"Garbage collector during the loaded window: {json.dumps(gc_loaded)}. With hundreds of"
            " thousands of tracked objects a full (generation 2) collection stops the loop for tens of"
            " milliseconds; the server already freezes its start-up objects and spaces collections out"
            " (`settle_heap`), so what is left is the live state itself: fewer tracked objects per"
            " conference (tuples, slots, plain values) would shorten each collection.",
        ]

    def invite_advice(self) -> list[str]:
        s = self.get("sip")
        assert s is not None
        a = s["api_to_invite"]
        p = self.prof("sip", "call_action")
        inc = dict(p.get("inclusive", []))
        return [
            f"The INVITE leaves before the HTTP answer in {a['invite_before_http_answer']} of {a['calls']}"
            " calls: the carrier binds the leg's RTP ports and sends the INVITE inside `dial`, right after"
            " the service has committed the new state and before the answer is written. The HTTP answer"
            f" alone takes p50 {n2(a['api_answer_ms']['p50'])} ms, p99 {n2(a['api_answer_ms']['p99'])} ms;"
            f" the machine's own loopback round trip to a do-nothing server is {self.latency_floor()}"
            " (cross-core wake-ups on this VM), which bounds what any server can reach here.",
            "",
            "From the profile of the `call` path (sampled at 1 kHz, which slows it; shares only): "
            f"`_commit` {inc.get('service.py:ConferenceService._commit', 0):.0f}%, `snapshot.dump`"
            f" {inc.get('snapshot.py:dump', 0):.0f}%, `SipCarrier.dial`"
            f" {inc.get('carrier.py:SipCarrier.dial', 0):.0f}%; {shares(p, 5)}.",
            "",
            "Proposed changes: the commit before effects is the rule that keeps a crash from leaving a"
            " call nobody knows about, so the INVITE waits for it; what is left is its cost (see the HTTP"
            " figure's proposals: compiled core, append-only commits) and the tail of this VM's wake-ups,"
            " which a server on dedicated cores would not see.",
        ]

    @staticmethod
    def rtp_noise(r: dict[str, Any]) -> list[str]:
        """The late-tick criterion on this VM: how busy was the relay when it missed it?"""
        misses = [x for x in r["runs"] if x["label"].startswith("echo relay") and x["late_pct"] >= 1]
        if not misses:
            return []
        x = min(misses, key=lambda x: x["legs"])
        return [
            f"The late-tick criterion is fragile on this VM: the bare relay missed it at {x['legs']} legs"
            f" ({x['late_pct']:.2f}% late, max {x['max_late_ms']:.0f} ms) while using only"
            f" {100 * x['cpu_s'] / x['wall_s']:.0f}% of its core, with"
            f" {100 * x.get('steal_s', 0) / x['wall_s']:.0f}%"
            " hypervisor steal in the window: a few stalls of the whole VM in a 6 s run are enough. So the"
            ' "largest N" rows understate both engine and relay; the CPU-based capacity is the steadier'
            " comparison.",
            "",
        ]

    def rtp_advice(self) -> list[str]:
        r = self.get("rtp")
        assert r is not None
        profiles = r.get("profiles") or {}
        relay = r["summary"].get("echo relay (baseline)", {})
        lines = [
            f"The bare relay costs {n1(relay.get('cpu_us_per_leg_tick'))} us of CPU per leg per tick on"
            " this machine (one recvfrom + one sendto through the event loop's datagram transport; on"
            " loopback the sender's syscall also does the receiver's kernel work). The engine drains its"
            " sockets through one epoll and sends with plain sendto, so its own packet I/O costs about the"
            " same two system calls per leg-tick; the rest is the media work (jitter buffer, G.711, mix).",
            "",
            *self.rtp_noise(r),
        ]
        for name, p in profiles.items():
            if p and "error" not in p:
                lines += [f"Engine profile, {name}: {shares(p, 5)}.", ""]
        return [
            *lines,
            "Proposed changes: (1) recvmmsg/sendmmsg through a small C extension (or one socket per"
            " engine demultiplexed by source address), which divides the system-call share by the batch"
            " size; (2) a compiled hot loop (Cython or Rust) for parse-jitter-mix-encode-send if the"
            " remaining Python per leg is still the larger share.",
        ]

    def setup_advice(self) -> list[str]:
        s = self.get("sip")
        assert s is not None
        st = s["setups"]
        p = self.prof("sip", "setups")
        passed_steps = [x for x in st["steps"] if x.get("passed")]
        cost = min((x["server_cpu_ms_per_call"] for x in passed_steps), default=None)
        return [
            f"Server CPU per call: {n2(cost)} ms at the best passing step, i.e. a one-core ceiling of"
            f" ~{n0(1000 / cost) if cost else '-'} calls/s before any queueing.",
            "",
            f"Profile of an inbound-call load at {p.get('rate', '?')}/s for {p.get('seconds', '?')} s:"
            f" {shares(p)}.",
            "",
            "Proposed changes: fewer commits per call (the run row, the conference's start and its end"
            " are separate transactions), and the compiled-core proposal of the HTTP figure for the"
            " conference life cycle each call runs.",
        ]

    def mixer_advice(self) -> list[str]:
        m = self.get("media")
        assert m is not None
        worst = max(m["mixer"], key=lambda r: r["ratio"])
        return [
            "At small N a tick is numpy call overhead, not arithmetic: a plain mix-minus is four numpy"
            " calls (reduce, subtract, clip, cast) against one for sum(axis=0); numpy's own bare mix-minus"
            f" (sum + subtract, no saturation) takes {n1(worst.get('numpy_bare_mix_minus_us'))} us at"
            f" N={worst['n']} against {n1(worst.get('numpy_sum_us'))} us for the sum. The engine mixes"
            " conferences of one size together in one batch, which amortises that overhead across them.",
        ]
