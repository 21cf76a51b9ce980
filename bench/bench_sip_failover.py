"""Failover of a SIP conference after `kill -9` of its owner (issue #12): two real phones (baresip), two
nodes (`bridgeline serve --carrier sip`) on one fresh PostgreSQL database.

One call for the whole run: the agent and the customer (each baresip saying its own tone) are dialled
by a run on node b. Every round kills the conference's current owner with SIGKILL (its whole process
group), and at once
- sends a hold of the customer to the other node, which waits for the takeover and runs it (or forwards
  it): (a) kill -> that action accepted (201), timed when the answer arrives;
- captures the phones' media ports on `lo` (dumpcap, tests/sip_e2e/pcapkit.py): (b) kill -> the first
  RTP datagram from the new owner's RTP ports to each phone, by its capture timestamp (a loopback send
  is captured as it is sent, so this is when it reaches the phone's socket); audio is restored when
  both phones have one, the later of the two.
Then the customer is unheld, both phones must hear each other's tone again through the new owner (by
spectrum over a second, tests/sip_e2e/sipaudio.py: a round that fails this fails the run), the killed
node is restarted (a new epoch) and the next round kills the other one: the call moves back and forth.

Bounded: --rounds (at most 100), every wait has a limit, no round starts after --budget seconds; only
the processes this script started are stopped, by their pids (sipkit's ProcSet). The nodes keep the
defaults of the lease (3 s) and the heartbeat (1 s) unless --lease / --heartbeat say otherwise.

Run: .venv/bin/python bench/bench_sip_failover.py [--rounds 20] [--budget 900] [--out f.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "sip_e2e"), str(HERE.parent / "tests" / "e2e")]

import benchkit as kit  # noqa: E402
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, Phlo  # noqa: E402
from pcapkit import Capture, Datagram  # noqa: E402
from sipaudio import Heard, assert_hears, audio, rtp_frames  # noqa: E402
from sipkit import Baresip, Ports, ProcSet, SipServer, require_binaries, wait_for  # noqa: E402
from siplab import ALL_TONES, TONE_A, TONE_B, Lab, Tones  # noqa: E402

MAX_ROUNDS = 100
TAKEOVER_BOUND_S = 30.0  # from the kill to both legs recovered, on a loaded machine
PHONE_LIFETIME_S = 3600  # the phones' `timeout`: longer than any run the budget allows


def rtp_to(datagrams: list[Datagram], phone: Baresip, source: range, since: float) -> float | None:
    """Capture time of the first RTP datagram from `source` ports to the phone's media ports."""
    for d in datagrams:
        if d.at >= since and d.dport in phone.media_ports and d.sport in source and d.payload[:1] == b"\x80":
            return d.at
    return None


def hears(datagrams: list[Datagram], phone: Baresip, node: SipServer, window: tuple[float, float]) -> Heard:
    return Heard(audio(rtp_frames(datagrams, phone.media_ports, node.rtp_range), *window), phone.name)


def post_action(url: str, action: str, answers: list[tuple[int, str, float]]) -> None:
    """POST a member action; its status, body and the wall-clock time its answer arrived."""
    with httpx.Client(auth=(AUTH_ID, AUTH_TOKEN), timeout=60) as client:
        response = client.post(url, json={"action": action})
        answers.append((response.status_code, response.text, time.time()))


def recoveries(node: SipServer) -> float:
    return node.metrics().get("bridgeline_sip_recoveries_succeeded_total", 0.0)


def ready(node: SipServer) -> bool:
    try:
        return httpx.get(f"{node.url}/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Bench:
    def __init__(
        self, work: Path, database_url: str, budget_s: float, lease_s: float | None, heartbeat_s: float | None
    ) -> None:
        self.work = work
        self.ports = Ports()
        self.procs = ProcSet(work / "node-logs")
        self.tones = Tones(work / "tones", seconds=int(budget_s) + 300)  # the phones talk for the whole run
        env = {"DATABASE_URL": database_url, "BRIDGELINE_LOG_LEVEL": "warning"}
        if lease_s is not None:
            env["BRIDGELINE_NODE_LEASE_S"] = str(lease_s)
        if heartbeat_s is not None:
            env["BRIDGELINE_NODE_HEARTBEAT_S"] = str(heartbeat_s)
        self.nodes: dict[str, SipServer] = {}
        for node_id in (
            "b",
            "a",
        ):  # b first: the run placed from b stays there (a tie goes to the local node)
            node = SipServer(
                work / node_id,
                self.ports,
                self.procs,
                {},
                auth=(AUTH_ID, AUTH_TOKEN),
                env={**env, "BRIDGELINE_NODE_ID": node_id},
            )
            self.nodes[node_id] = node
            node.start()
        self.lab = Lab(self.nodes["b"], self.ports, self.tones, work)

    def close(self) -> list[str]:
        for node in self.nodes.values():
            for client in node.clients:
                client.close()
        leaked = self.lab.close()
        return leaked + self.procs.stop_all()

    def round(self, index: int, phlo: Phlo, agent: Baresip, customer: Baresip, owner: str) -> dict[str, Any]:
        victim, survivor = self.nodes[owner], self.nodes["a" if owner == "b" else "b"]
        wait_for(lambda: ready(survivor), 30, f"node {survivor.env['BRIDGELINE_NODE_ID']} ready")
        recovered_before = recoveries(survivor)
        capture = Capture(self.procs, self.work, f"capture-{index}", agent.media_ports | customer.media_ports)
        member = (
            f"{survivor.url}/v1/phlo/{phlo.phlo_id}/multi_party_call/{phlo.node_id}/members/{customer.uri}"
        )
        answers: list[tuple[int, str, float]] = []
        hold = threading.Thread(target=post_action, args=(member, "hold", answers), daemon=True)

        killed = time.time()
        victim.kill()  # SIGKILL to its process group
        hold.start()  # sent at once: nobody owns the conference yet
        wait_for(
            lambda: recoveries(survivor) >= recovered_before + 2,
            TAKEOVER_BOUND_S,
            "both legs recovered by the surviving node",
            interval=0.05,
        )
        hold.join(timeout=TAKEOVER_BOUND_S)
        if not answers or answers[0][0] != 201:
            raise RuntimeError(f"round {index}: the hold was not accepted: {answers}")
        accepted = answers[0][2] - killed
        unhold: list[tuple[int, str, float]] = []
        post_action(member, "unhold", unhold)
        if unhold[0][0] != 201:
            raise RuntimeError(f"round {index}: unhold refused: {unhold}")
        at_survivor = Phlo(Api(survivor), phlo.phlo_id, phlo.node_id)  # type: ignore[arg-type]
        Lab.connected(at_survivor, customer.uri, hears=[agent.uri], timeout=15)
        Lab.connected(at_survivor, agent.uri, hears=[customer.uri], timeout=15)
        at_survivor.api.close()
        window = Lab.listen(seconds=1.0, settle=0.5)
        datagrams = capture.stop()
        firsts = {p.name: rtp_to(datagrams, p, survivor.rtp_range, killed) for p in (agent, customer)}
        missing = [name for name, at in firsts.items() if at is None]
        if missing:
            raise RuntimeError(f"round {index}: no RTP from the new owner to {missing}")
        assert_hears(
            hears(datagrams, agent, survivor, window), [TONE_B], [f for f in ALL_TONES if f != TONE_B]
        )
        assert_hears(
            hears(datagrams, customer, survivor, window), [TONE_A], [f for f in ALL_TONES if f != TONE_A]
        )
        restored = max(at for at in firsts.values() if at is not None) - killed
        capture.path.unlink(missing_ok=True)
        victim.restart()  # same id, data directory, ports: a new epoch
        return {
            "round": index,
            "killed": owner,
            "new_owner": survivor.env["BRIDGELINE_NODE_ID"],
            "kill_to_action_accepted_s": round(accepted, 4),
            "kill_to_audio_restored_s": round(restored, 4),
            "first_rtp_per_phone_s": {
                name: round(at - killed, 4) for name, at in firsts.items() if at is not None
            },
        }


def run(opts: argparse.Namespace) -> dict[str, Any]:
    require_binaries()
    rounds = min(opts.rounds, MAX_ROUNDS)
    work = Path(tempfile.mkdtemp(prefix="bridgeline-bench-sip-failover-"))
    deadline = time.monotonic() + opts.budget
    load0 = kit.loadavg()
    results: list[dict[str, Any]] = []
    with kit.fresh_database() as database_url:
        bench = Bench(work, database_url, opts.budget, opts.lease, opts.heartbeat)
        try:
            lab = bench.lab
            agent = lab.baresip("agent", TONE_A, timeout_s=PHONE_LIFETIME_S)
            customer = lab.baresip("customer", TONE_B, timeout_s=PHONE_LIFETIME_S)
            phlo = lab.create_phlo()
            lab.run(phlo, agent=agent.uri, customer=customer.uri)
            lab.connected(phlo, customer.uri, hears=[agent.uri])
            lab.connected(phlo, agent.uri, hears=[customer.uri])
            owner = "b"
            for index in range(1, rounds + 1):
                if time.monotonic() > deadline:
                    print(f"budget spent: {index - 1} rounds done", file=sys.stderr)
                    break
                result = bench.round(index, phlo, agent, customer, owner)
                results.append(result)
                owner = result["new_owner"]
                print(
                    f"round {index}/{rounds}: kill -9 {result['killed']} -> action accepted at "
                    f"{result['new_owner']} after {result['kill_to_action_accepted_s']:.2f} s, audio "
                    f"restored after {result['kill_to_audio_restored_s']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            leaked = bench.close()
            if leaked:
                print(f"processes left behind (killed): {leaked}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "machine": kit.machine(),
        "rounds": len(results),
        "lease_s": opts.lease or 3.0,
        "heartbeat_s": opts.heartbeat or 1.0,
        "kill_to_action_accepted_ms": kit.summary_ms([r["kill_to_action_accepted_s"] for r in results]),
        "kill_to_audio_restored_ms": kit.summary_ms([r["kill_to_audio_restored_s"] for r in results]),
        "audio_measured_by": "capture on lo: first RTP from the new owner's ports to each phone, the later",
        "per_round": results,
        "loadavg_start": load0,
        "loadavg_end": kit.loadavg(),
        "command": f".venv/bin/python bench/bench_sip_failover.py --rounds {rounds} --budget {opts.budget:g}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20, help=f"kills (at most {MAX_ROUNDS})")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds after which no round starts")
    parser.add_argument("--lease", type=float, default=None, help="the nodes' lease (default: theirs, 3 s)")
    parser.add_argument("--heartbeat", type=float, default=None, help="their heartbeat (default: 1 s)")
    parser.add_argument("--out", default=None, help="JSON results file")
    opts = parser.parse_args()
    kit.write_result(opts.out, "sip_failover", run(opts))


if __name__ == "__main__":
    main()
