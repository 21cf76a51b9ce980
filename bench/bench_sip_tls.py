"""SIP call setups per second over TLS (and TCP) against UDP, in the same run.

Each transport gets a fresh `bridgeline serve --carrier sip` (pinned to CPU 1; SQLite) listening on
UDP, TCP and TLS (a certificate made with openssl for this run), with an inbound route: a call to
INBOUND_NUMBER starts a PHLO run that adopts the caller and dials nobody, so each call is a
one-member conference that ends with the caller's BYE (as in bench_sip.py).

Load: this script (pinned to CPU 0) runs `--concurrency` callers in a closed loop for `--seconds`
after a warm-up: INVITE (SDP), 100/180/200, ACK, BYE, 200; a call that does not complete in 5 s
fails. Over TCP and TLS all callers share one connection (as a trunk does: the TLS handshake is
paid once); over UDP they share one socket. Debian's sipp has no TLS, hence this Python caller;
it is the same code for all three transports (the stream ones frame with sip/stream_framing.py).
Reported per transport: completed setups/s, INVITE -> 200 times, server CPU per call, failures;
and the ratio of TLS (and TCP) to the UDP baseline of the same run.

Run: .venv/bin/python bench/bench_sip_tls.py [--seconds 10] [--concurrency 16] [--out f.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit as kit

from bridgeline.sip.message import Response, parse_message
from bridgeline.sip.stream_framing import StreamFramer

INBOUND_NUMBER = "+14155550100"
INBOUND_PHLO = "bench-tls-inbound"
TRANSPORTS = ("udp", "tcp", "tls")
CALL_TIMEOUT_S = 5.0
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
)


def make_certs(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1 (openssl CLI), for this run only."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    run = ["openssl", "req", "-x509", *ec]
    ca, ca_key = str(root / "ca.crt"), str(root / "ca.key")
    subprocess.run(
        [*run, "-subj", "/CN=bench-ca", "-keyout", ca_key, "-out", ca], check=True, capture_output=True
    )
    leaf = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-CA", ca, "-CAkey", ca_key]
    out = ["-keyout", str(root / "sip.key"), "-out", str(root / "sip.crt")]
    subprocess.run([*run, *leaf, *out], check=True, capture_output=True)
    return root / "ca.crt", root / "sip.crt", root / "sip.key"


class BenchServer:
    def __init__(self, certs: tuple[Path, Path, Path]) -> None:
        self.ports = {
            "udp": kit.free_port(socket.SOCK_DGRAM),
            "tcp": kit.free_port(),
            "tls": kit.free_port(),
        }
        self.server = kit.Server(carrier="sip")
        self.server.root.mkdir(parents=True, exist_ok=True)
        ca, cert, key = certs
        config = {
            "listen": f"127.0.0.1:{self.ports['udp']}",
            "domain": "bridgeline.bench",
            "rtp": {"host": "127.0.0.1", "ports": "42000-45999"},
            "tcp": {"listen": f"127.0.0.1:{self.ports['tcp']}"},
            "tls": {
                "listen": f"127.0.0.1:{self.ports['tls']}",
                "certificate": str(cert),
                "key": str(key),
                "ca_file": str(ca),
            },
            # the trunk is our own address: INVITEs from 127.0.0.1 are trusted without digest
            "trunk": {"proxy": "127.0.0.1:9", "domain": "trunk.bench", "caller_id": "+14150000000"},
            "inbound": [
                {"number": INBOUND_NUMBER, "phlo_id": INBOUND_PHLO, "payload": {"customer": "{{from}}"}}
            ],
        }
        path = self.server.root / "sip.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.server.args = ["--sip-config", str(path)]

    def __enter__(self) -> BenchServer:
        self.server.start()
        kit.create_inbound_phlo(self.server, INBOUND_PHLO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracebacks = self.server.tracebacks()
        self.server.stop()


class Caller:
    """One signalling path to the server (a UDP socket or one TCP/TLS connection) shared by all the
    calls; responses and requests are routed to calls by Call-ID."""

    def __init__(self, transport: str, port: int, ca: Path) -> None:
        self.transport, self.port, self.ca = transport, port, ca
        self.waiting: dict[str, asyncio.Queue[bytes]] = {}
        self.local_port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            caller = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    caller.deliver(data)

            transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
            self._udp = transport
            self.local_port = transport.get_extra_info("sockname")[1]
            return
        context = None
        if self.transport == "tls":
            context = ssl.create_default_context(cafile=str(self.ca))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=context, server_hostname="127.0.0.1" if context else None
        )
        self._writer = writer
        self.local_port = writer.get_extra_info("sockname")[1]
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for message in framer.feed(data):
                self.deliver(message)

    def deliver(self, data: bytes) -> None:
        start = data.find(b"\r\nCall-ID:")
        if start < 0:
            start = data.find(b"\r\ni:")
        if start < 0:
            return
        end = data.index(b"\r\n", start + 2)
        call_id = data[start:end].split(b":", 1)[1].strip().decode()
        queue = self.waiting.get(call_id)
        if queue is not None:
            queue.put_nowait(data)

    def send(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, ("127.0.0.1", self.port))
        elif self._writer is not None:
            self._writer.write(data)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()


def request(caller: Caller, method: str, call_id: str, cseq: int, to_tag: str, branch: str) -> bytes:
    via = f"SIP/2.0/{caller.transport.upper()} 127.0.0.1:{caller.local_port};branch=z9hG4bK{branch};rport"
    body = SDP.format(port=kit.LOAD_CPU + 40000).encode() if method == "INVITE" else b""
    lines = [
        f"{method} sip:{INBOUND_NUMBER}@127.0.0.1:{caller.port};transport={caller.transport} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:+1415{int(call_id[:8], 16) % 10**7:07d}@127.0.0.1>;tag=f{call_id}",  # a caller per call
        f"To: <sip:{INBOUND_NUMBER}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:+14155551234@127.0.0.1:{caller.local_port};transport={caller.transport}>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def final(queue: asyncio.Queue[bytes], method: str) -> Response:
    while True:
        message = parse_message(await queue.get())
        if isinstance(message, Response) and message.cseq.method == method and message.status >= 200:
            return message


async def one_call(caller: Caller, rng: random.Random) -> float:
    call_id = f"{rng.getrandbits(64):016x}"
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    caller.waiting[call_id] = queue
    try:
        started = time.perf_counter()
        caller.send(request(caller, "INVITE", call_id, 1, "", f"i{call_id}"))
        ok = await final(queue, "INVITE")
        answered = time.perf_counter() - started
        if ok.status != 200:
            raise RuntimeError(f"INVITE answered {ok.status}")
        to_tag = ok.to_addr.tag or ""
        caller.send(request(caller, "ACK", call_id, 1, to_tag, f"a{call_id}"))
        caller.send(request(caller, "BYE", call_id, 2, to_tag, f"b{call_id}"))
        bye = await final(queue, "BYE")
        if bye.status != 200:
            raise RuntimeError(f"BYE answered {bye.status}")
        return answered
    finally:
        del caller.waiting[call_id]


async def load(
    transport: str, port: int, ca: Path, concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    caller = Caller(transport, port, ca)
    await caller.open()
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup
    measure_to = measure_from + seconds
    times: list[float] = []
    failures: list[str] = []
    completed = total = 0

    async def worker(seed: int) -> None:
        nonlocal completed, total
        rng = random.Random(seed)
        while loop.time() < measure_to:
            began = loop.time()
            try:
                answered = await asyncio.wait_for(one_call(caller, rng), CALL_TIMEOUT_S)
            except (TimeoutError, RuntimeError) as exc:
                if began >= measure_from:
                    failures.append(repr(exc))
                continue
            total += 1
            if began >= measure_from and loop.time() <= measure_to:
                completed += 1
                times.append(answered)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    caller.close()
    return {
        "completed": completed,
        "completed_all": total,  # the warm-up's included: what the server's CPU time was spent on
        "failed": len(failures),
        "failures": failures[:5],
        "invite_to_200": times,
    }


def run_transport(
    transport: str, certs: tuple[Path, Path, Path], concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    with BenchServer(certs) as bench:
        kit.wait_quiet(max_wait=10)
        cpu0 = kit.process_cpu_s(bench.server.pid)
        other = kit.Disturbance(bench.server.pid)
        t0 = time.monotonic()
        out = asyncio.run(load(transport, bench.ports[transport], certs[0], concurrency, warmup, seconds))
        wall = time.monotonic() - t0
        cpu = kit.process_cpu_s(bench.server.pid) - cpu0
        disturbance = other.stop()
    return {
        "transport": transport,
        "concurrency": concurrency,
        "seconds": seconds,
        "completed": out["completed"],
        "failed": out["failed"],
        "failures": out["failures"],
        "setups_per_s": round(out["completed"] / seconds, 1),
        "invite_to_200_ms": kit.summary_ms(sorted(out["invite_to_200"])),
        "server_cpu_util": round(cpu / wall, 3),
        "server_cpu_ms_per_call": round(1000 * cpu / max(out["completed_all"], 1), 3),  # warm-up included
        "tracebacks": bench.tracebacks,
        **disturbance,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of udp, tcp, tls; the best kept")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    kit.pin_self(kit.LOAD_CPU)
    load0 = kit.loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        certs = make_certs(Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TRANSPORTS}
        for _ in range(opts.rounds):  # interleaved, so a disturbance does not favour one transport
            for transport in TRANSPORTS:
                run = run_transport(transport, certs, opts.concurrency, opts.warmup, opts.seconds)
                print(json.dumps({k: v for k, v in run.items() if k != "failures"}), flush=True)
                runs[transport].append(run)
    best = {t: max(rs, key=lambda r: (r["failed"] == 0, r["setups_per_s"])) for t, rs in runs.items()}
    udp = best["udp"]["setups_per_s"] or 1.0
    result = {
        "command": f".venv/bin/python bench/bench_sip_tls.py --seconds {opts.seconds:g}"
        f" --warmup {opts.warmup:g} --concurrency {opts.concurrency} --rounds {opts.rounds}",
        "loadavg_start": load0,
        "loadavg_end": kit.loadavg(),
        "machine": kit.machine(),
        "concurrency": opts.concurrency,
        "seconds": opts.seconds,
        "best": best,
        "runs": runs,
        "ratio_tls_vs_udp": round(best["tls"]["setups_per_s"] / udp, 3),
        "ratio_tcp_vs_udp": round(best["tcp"]["setups_per_s"] / udp, 3),
        "cpu_ratio_tls_vs_udp": round(
            best["tls"]["server_cpu_ms_per_call"] / max(best["udp"]["server_cpu_ms_per_call"], 1e-9), 3
        ),
    }
    kit.write_result(opts.out, "sip_tls", result)
    print(
        json.dumps({k: result[k] for k in ("ratio_tls_vs_udp", "ratio_tcp_vs_udp", "cpu_ratio_tls_vs_udp")})
    )


if __name__ == "__main__":
    main()
