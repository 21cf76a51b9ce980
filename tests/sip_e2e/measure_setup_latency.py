"""Call setup latency of the sip carrier: from the PHLO run request (HTTP POST on the wire) to the
first INVITE on the wire, both timestamped by one tshark capture on the loopback interface.

Not a test (nothing is asserted): run it by hand, e.g.

    .venv/bin/python tests/sip_e2e/measure_setup_latency.py --calls 50

Calls are placed one after another (each is answered by a sipp phone, then hung up through the API
and waited for), so the n-th POST and the first INVITE after it belong to the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent / "e2e")]

from e2ekit import AUTH_ID, AUTH_TOKEN  # noqa: E402
from pcapkit import Capture  # noqa: E402
from sipkit import Ports, ProcSet, Sipp, SipServer, require_binaries  # noqa: E402
from siplab import Lab, Tones  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    require_binaries()
    work = Path(tempfile.mkdtemp(prefix="sip-latency-"))
    ports = Ports()
    server_procs = ProcSet(work / "server")
    server = SipServer(work / "bridgeline", ports, server_procs, {}, auth=(AUTH_ID, AUTH_TOKEN))
    server.start()
    lab = Lab(server, ports, Tones(work / "tones"), work)
    try:
        phone = Sipp(
            lab.procs,
            ports,
            work,
            "phone",
            "uas_play.xml",
            substitutions={"AUDIO_WAV": str(lab.tones.ulaw(1000))},
            calls=args.calls,
            timeout_s=40 + 2 * args.calls,
        )
        capture = Capture(lab.procs, work, "latency", [server.sip_port], tcp_ports=[server.port])
        time.sleep(0.5)  # "Capturing on" comes a little before the capture really is
        phlo = lab.create_phlo(dial=[("{{agent}}", "agent")])
        sdk_phlo = lab.sdk.phlo.get(phlo.phlo_id)
        posted: list[float] = []
        for i in range(args.calls):
            address = f"sip:call{i}@127.0.0.1:{phone.sip_port}"
            before = time.time()
            sdk_phlo.run(agent=address)
            posted.append(time.time() - before)
            view = lab.connected(phlo, address)
            lab.mpc(phlo).member(address).hangup()
            phlo.wait_ended(view["mpc_uuid"])
        time.sleep(0.3)
        capture.stop()
        fields = ["-T", "fields", "-e", "frame.time_epoch"]
        posts = _times(
            capture.path, f'tcp.dstport == {server.port} && frame contains "POST /v1/account/"', fields
        )
        invites = _times(
            capture.path, f'udp.srcport == {server.sip_port} && frame contains "INVITE sip:call"', fields
        )
        latencies = []
        for post in posts:
            first = next((t for t in invites if t >= post), None)
            if first is not None:
                latencies.append((first - post) * 1000)
        print(f"{len(posts)} runs, {len(invites)} INVITEs (first transmissions and retransmissions)")
        print(
            f"POST -> first INVITE on the wire: p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p90 {percentile(latencies, 0.9):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
            f"max {max(latencies):.1f} ms, mean {statistics.mean(latencies):.1f} ms"
        )
        client = [t * 1000 for t in posted]
        print(f"run request round trip seen by the SDK: p50 {percentile(client, 0.5):.1f} ms, "
              f"p99 {percentile(client, 0.99):.1f} ms")  # fmt: skip
    finally:
        lab.close()
        server.stop()
        server_procs.stop_all()


def _times(pcap: Path, display_filter: str, fields: list[str]) -> list[float]:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", display_filter, *fields],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return sorted(float(line) for line in out.split())


if __name__ == "__main__":
    main()
