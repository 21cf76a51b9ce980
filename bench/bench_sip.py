"""The sip carrier: API request to INVITE on the wire, and SIP call setups per second with sipp.

Servers run `--carrier sip` (SQLite, pinned to one core) with a trunk whose proxy is this script's
own UDP socket (a minimal UAS in a thread, on the other core) and an inbound route: calls to
INBOUND_NUMBER start a PHLO run that adopts the caller and dials nobody, so each inbound call is a
conference with one member that ends with the caller's BYE.

API -> INVITE: a run first connects an agent and a customer through the trunk (the UAS answers
200 with SDP). Then, one at a time, a `call` action dials a number from a small pool: the time from
just before the HTTP request is written to the arrival of that call's INVITE at the UAS socket (both
clocks are this process's perf_counter). The UAS answers those INVITEs 486 Busy, so the member
leaves; re-dialing a pool number replaces its old member, so the conference stays small. Calls are
spaced out (the next one starts after the ACK of the 486): this is latency on an idle server.

API -> INVITE with the trunk named by host (RFC 3263): two servers side by side, one whose trunk
proxy is the UAS's IP address and one whose proxy is a name with an SRV record (dnsmasq on
127.0.0.1, TTL 1 h) pointing at the same UAS, measured as above in alternating rounds so that
whatever else the machine does falls on both alike. The conference's first dials look the name up;
the measured `call`s are served from the cache, which the server's DNS counters around them show
(no lookup). The p99 ratio name / IP is kept.

Setups per second: sipp (pinned to the load core) calls INBOUND_NUMBER with bench/sipp/
uac_inbound.xml (INVITE, 100/180, 200, ACK, pause, BYE, 200) at stepped rates, each step on a fresh
server, bounded by a call count (-m) and a global timeout; a step passes when no call failed and the
calls completed at >= 95% of the asked rate. The best passing rate is then sustained for --sustain
seconds (transactions linger 32 s after they end, so short steps do not reach the steady state).
Failed calls, sipp's INVITE->200 times (1 ms resolution) and the server's CPU are kept.

Run: .venv/bin/python bench/bench_sip.py [--calls 200] [--rates 50,100,200,300,400] [--out f.json]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import benchkit as kit

INBOUND_NUMBER = "+14155550100"
INBOUND_PHLO = "bench-inbound"
SCENARIO = kit.BENCH / "sipp" / "uac_inbound.xml"
POOL = 8  # numbers the `call` actions cycle through
DISTURBED = 0.25  # other processes + hypervisor steal took more than a quarter of a core in the step
TRUNK_NAME = "trunk.bench.test"  # the by-name comparison's trunk proxy (an SRV record, dnsmasq)
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}


# --------------------------------------------------------------------------- a minimal UAS
class Uas(threading.Thread):
    """Answers INVITEs for `answer` numbers with 200 + SDP, the others with 486; 200 to BYE.
    Records when each number's first INVITE arrived (perf_counter, right after recvfrom)."""

    def __init__(self, answer: set[str]) -> None:
        super().__init__(daemon=True)
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.rtp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: the kernel drops
        self.rtp_sink.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.invites: list[tuple[str, str, float]] = []  # (number, call-id, arrival) of new INVITEs
        self.seen: set[str] = set()  # call-ids already recorded (retransmissions are not arrivals)
        self.acked: set[str] = set()  # call-ids whose final answer was acknowledged
        self.cond = threading.Condition()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        self.join(2)
        self.sock.close()
        self.rtp_sink.close()

    def run(self) -> None:
        while not self.stopped:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.perf_counter()
            try:
                self.handle(data, addr, arrived)
            except Exception as exc:  # a malformed datagram must not end the bench silently
                print(f"uas: {exc!r}", flush=True)

    def handle(self, data: bytes, addr: tuple[str, int], arrived: float) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        start = lines[0].split(" ")
        if start[0].startswith("SIP/"):
            return  # a response (we send no requests)
        method, uri = start[0], start[1]
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers.append((COMPACT.get(name, name), value.strip()))
        get = {k: v for k, v in reversed(headers)}  # first occurrence wins
        call_id = get.get("call-id", "")
        if method == "INVITE":
            number = uri.split(":", 1)[1].split("@", 1)[0]
            with self.cond:
                if call_id not in self.seen:
                    self.seen.add(call_id)
                    self.invites.append((number, call_id, arrived))
                    self.cond.notify_all()
            if number in self.answer:
                self.respond(addr, headers, 200, "OK", self.answer_sdp(number, call_id, body))
            else:
                self.respond(addr, headers, 486, "Busy Here")
        elif method == "ACK":
            with self.cond:
                self.acked.add(call_id)
                self.cond.notify_all()
        elif method in ("BYE", "CANCEL", "OPTIONS"):
            self.respond(addr, headers, 200, "OK")

    def answer_sdp(self, number: str, call_id: str, offer: bytes) -> bytes:
        """The SDP of the 200 to an INVITE (retransmissions included); a subclass may give each call
        its own RTP port (bench_tick_isolation.py)."""
        return self.sdp()

    def sdp(self, port: int | None = None) -> bytes:
        port = self.rtp_sink.getsockname()[1] if port is None else port
        return (
            f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        ).encode()

    def respond(
        self,
        addr: tuple[str, int],
        headers: list[tuple[str, str]],
        status: int,
        reason: str,
        body: bytes = b"",
    ) -> None:
        out = [f"SIP/2.0 {status} {reason}"]
        for name, value in headers:
            if name == "via":
                out.append(f"Via: {value}")
        for name, value in headers:
            if name == "from":
                out.append(f"From: {value}")
            elif name == "to":
                out.append(
                    f"To: {value}" + ("" if ";tag=" in value else f";tag=uas{random.getrandbits(32):x}")
                )
            elif name in ("call-id", "cseq"):
                out.append(f"{'Call-ID' if name == 'call-id' else 'CSeq'}: {value}")
        if status == 200 and body:
            out.append(f"Contact: <sip:uas@127.0.0.1:{self.port}>")
            out.append("Content-Type: application/sdp")
        out.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(out) + "\r\n\r\n").encode() + body, addr)

    def mark(self) -> int:
        with self.cond:
            return len(self.invites)

    def wait_invite(self, number: str, since: int, timeout: float) -> tuple[str, float] | None:
        """The first INVITE for `number` received after mark() returned `since`: (call-id, arrival)."""

        def found() -> tuple[str, float] | None:
            return next(((c, t) for n, c, t in self.invites[since:] if n == number), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
            return found()

    def wait_acked(self, call_id: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: call_id in self.acked, timeout)


# --------------------------------------------------------------------------- the server
def sip_server(
    uas_port: int, sip_port: int, rtp_ports: str = "42000-45999", nameserver: str | None = None
) -> kit.Server:
    """With a nameserver, the trunk's proxy is TRUNK_NAME (its SRV record names the UAS)."""
    server = kit.Server(carrier="sip")
    server.root.mkdir(parents=True, exist_ok=True)
    proxy = f"127.0.0.1:{uas_port}" if nameserver is None else TRUNK_NAME
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{sip_port}",
        "domain": "bridgeline.bench",
        "rtp": {"host": "127.0.0.1", "ports": rtp_ports},
        "trunk": {"proxy": proxy, "domain": "trunk.bench", "caller_id": "+14150000000"},
        "inbound": [{"number": INBOUND_NUMBER, "phlo_id": INBOUND_PHLO, "payload": {"customer": "{{from}}"}}],
    }
    if nameserver is not None:
        config["dns"] = {"nameservers": [nameserver]}
    path = server.root / "sip.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    server.args = ["--sip-config", str(path)]
    return server


# --------------------------------------------------------------------------- API -> INVITE
def start_sip_conference(server: kit.Server, uas: Uas) -> tuple[str, str]:
    """A conference of two members reached through the trunk (the UAS answers them); (node path, agent)."""
    with server.client() as client:
        phlo_id, node_id = kit.create_phlo(client)
        agent, customer = sorted(uas.answer)
        r = client.post(
            f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}", json={"agent": agent, "customer": customer}
        )
        r.raise_for_status()
        kit.wait_connected(client, phlo_id, node_id, [agent, customer], timeout=20)
    return f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}", agent


def invite_latency(
    server: kit.Server, uas: Uas, path: str, agent: str, calls: int, warmup: int, first: int = 0
) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Authorization": kit.basic_auth(), "Content-Type": "application/json"}
    to_invite: list[float] = []
    to_answer: list[float] = []
    invite_first = missing = refused = 0
    for i in range(first, first + warmup + calls):
        # A small pool of numbers: a re-dialed address replaces the member that left, so the
        # conference (and the snapshot committed per input) stays at 2-3 members throughout.
        number = f"+1415888{i % POOL:04d}"
        body = json.dumps({"action": "call", "to": number, "role": "agent", "trigger_source": agent})
        since = uas.mark()
        t0 = time.perf_counter()
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        t1 = time.perf_counter()
        invite = uas.wait_invite(number, since, 3.0)
        if response.status != 201:
            refused += 1
        if invite is None:
            missing += 1
            continue
        call_id, arrived = invite
        uas.wait_acked(call_id, 3.0)  # the 486 was taken: the member has left, the server is idle again
        time.sleep(0.005)
        if i < first + warmup:
            continue
        to_invite.append(arrived - t0)
        to_answer.append(t1 - t0)
        invite_first += arrived < t1
    conn.close()
    return {
        "calls": calls,
        "warmup_calls": warmup,
        "samples_s": to_invite,  # merged across rounds by the by-name comparison, then dropped
        "api_to_invite_ms": kit.summary_ms(to_invite),
        "api_answer_ms": kit.summary_ms(to_answer),
        "invite_before_http_answer": invite_first,
        "missing_invites": missing,
        "non_201": refused,
    }


# --------------------------------------------------------------------------- setups per second
def sipp_step(
    server: kit.Server, sip_port: int, rate: int, seconds: float, hold_ms: int, work: Path
) -> dict[str, Any]:
    total = max(1, round(rate * seconds))
    step_dir = work / f"rate-{rate}"
    shutil.rmtree(step_dir, ignore_errors=True)
    step_dir.mkdir(parents=True)
    command = [
        *kit.pin_prefix(kit.LOAD_CPU),
        "sipp",
        f"127.0.0.1:{sip_port}",
        "-sf",
        str(SCENARIO),
        "-s",
        INBOUND_NUMBER,
        "-i",
        "127.0.0.1",
        "-p",
        str(kit.free_port(socket.SOCK_DGRAM)),
        "-mp",
        str(kit.free_port(socket.SOCK_DGRAM)),
        "-r",
        str(rate),
        "-m",
        str(total),
        "-l",
        str(max(rate * 4, 100)),
        "-d",
        str(hold_ms),
        "-recv_timeout",
        "5000",
        "-timeout",
        f"{round(seconds + 30)}s",
        "-timeout_error",
        "-nostdin",
        "-trace_stat",
        "-stf",
        "stats.csv",
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-trace_err",
    ]
    cpu0, t0 = kit.process_cpu_s(server.pid), time.monotonic()
    other = kit.Disturbance(server.pid)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command, cwd=step_dir, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    wall = time.monotonic() - t0
    cpu = kit.process_cpu_s(server.pid) - cpu0
    disturbance = other.stop()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    disturbance["other_cpu_util"] = round(max(disturbance["other_cpu_util"] - sipp_cpu / wall, 0.0), 3)
    stats = _last_stats(step_dir / "stats.csv")
    ok = int(stats.get("SuccessfulCall(C)", 0))
    failed = int(stats.get("FailedCall(C)", 0))
    elapsed = _elapsed_s(stats)
    rtts = _rtts(step_dir)
    result = {
        "rate": rate,
        "calls": total,
        "successful": ok,
        "failed": failed,
        "sipp_exit": done.returncode,
        "elapsed_s": round(elapsed, 2),
        "completed_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "server_cpu_util": round(cpu / wall, 3),
        "server_cpu_ms_per_call": round(1000 * cpu / max(ok + failed, 1), 3),
        "sipp_cpu_util": round(sipp_cpu / wall, 3),
        "invite_to_200_ms": kit.summary_ms([x / 1000 for x in rtts]),
        **disturbance,
    }
    if failed or done.returncode not in (0,):
        result["sipp_stderr"] = done.stderr[-800:]
        errors = sorted(step_dir.glob("*_errors.log"))
        if errors:
            result["sipp_errors"] = errors[0].read_text(errors="replace")[-1500:]
    return result


def _last_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _elapsed_s(stats: dict[str, str]) -> float:
    """CurrentTime - StartTime; each is 'date<TAB>time<TAB>epoch seconds'."""
    try:
        start = float(stats["StartTime"].split("\t")[-1])
        current = float(stats["CurrentTime"].split("\t")[-1])
    except (KeyError, ValueError):
        return 0.0
    return current - start


def _rtts(step_dir: Path) -> list[float]:
    """INVITE -> 200 response times in ms, from sipp's -trace_rtt file."""
    values: list[float] = []
    for path in step_dir.glob("*_rtt.csv"):
        for row in csv.reader(path.read_text(errors="replace").splitlines()[1:], delimiter=";"):
            if len(row) >= 2:
                try:
                    values.append(float(row[1]))
                except ValueError:
                    continue
    return values


class InboundServer:
    """A fresh sip-carrier server for one sipp run: a failed step leaves calls (and their RTP) behind
    and lingering transactions, which must not weigh on the next step."""

    def __init__(self, uas_port: int, rtp_ports: str = "42000-45999") -> None:
        self.sip_port = kit.free_port(socket.SOCK_DGRAM)
        self.server = sip_server(uas_port, self.sip_port, rtp_ports)

    def __enter__(self) -> InboundServer:
        self.server.start()
        kit.create_inbound_phlo(self.server, INBOUND_PHLO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracebacks = self.server.tracebacks()
        self.server.stop()


def _disturbance(run: dict[str, Any]) -> float:
    return float(run["other_cpu_util"]) + float(run["steal_util"])


def passed(step: dict[str, Any]) -> bool:
    return bool(
        step["failed"] == 0
        and step["successful"] == step["calls"]
        and step["completed_per_s"] >= 0.95 * step["rate"]
    )


def setups(
    uas_port: int, rates: list[int], seconds: float, hold_ms: int, sustain_s: float, work: Path
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best = 0
    tracebacks = 0
    for rate in rates:
        for attempt in range(2):  # a failed step is run again once if other processes disturbed it
            with kit.timed(f"sipp at {rate}/s"), InboundServer(uas_port) as inbound:
                step = sipp_step(inbound.server, inbound.sip_port, rate, seconds, hold_ms, work)
            tracebacks += inbound.tracebacks
            step["passed"] = passed(step)
            steps.append(step)
            print(json.dumps({k: v for k, v in step.items() if not k.startswith("sipp_")}), flush=True)
            if step["passed"] or step["other_cpu_util"] + step["steal_util"] <= DISTURBED or attempt:
                break
        if not step["passed"]:
            break
        best = rate
    # Terminated transactions linger (Timer J: 32 s for non-INVITE over UDP), so a short step does
    # not reach the steady state: the best rate is run again for sustain_s seconds, and when that
    # fails, the next lower passing rate once more.
    sustained: list[dict[str, Any]] = []
    candidates = [x["rate"] for x in steps if x.get("passed")]
    for rate in sorted(set(candidates), reverse=True)[:2] if sustain_s > 0 else []:
        with kit.timed(f"sipp at {rate}/s for {sustain_s:g} s"), InboundServer(uas_port) as inbound:
            run = sipp_step(inbound.server, inbound.sip_port, rate, sustain_s, hold_ms, work)
        tracebacks += inbound.tracebacks
        run["passed"] = passed(run)
        sustained.append(run)
        print(json.dumps({k: v for k, v in run.items() if not k.startswith("sipp_")}), flush=True)
        if run["passed"]:
            break
    return {
        "steps": steps,
        "best_rate_without_failure": best,
        "sustained": sustained,
        "best_sustained_rate": max((x["rate"] for x in sustained if x["passed"]), default=0),
        "sustain_s": sustain_s,
        "hold_ms": hold_ms,
        "step_s": seconds,
        "server_tracebacks": tracebacks,
    }


def profile_setups(uas_port: int, rate: int, seconds: float, work: Path, out: Path) -> dict[str, Any]:
    with InboundServer(uas_port) as inbound:
        proc = kit.start_profile(inbound.server.pid, seconds, out, rate=100)
        time.sleep(0.3)
        step = sipp_step(inbound.server, inbound.sip_port, rate, seconds, 0, work / "profile")
    return {
        **kit.finish_profile(proc, out, 25),
        "rate": rate,
        "seconds": seconds,
        "completed_per_s_while_sampled": step["completed_per_s"],
        "failed_while_sampled": step["failed"],
    }


def api_to_invite(
    results: dict[str, Any], profiles: dict[str, Any], uas: Uas, calls: int, profile_dir: Path | None
) -> None:
    server = sip_server(uas.port, kit.free_port(socket.SOCK_DGRAM))
    try:
        server.start()
        path, agent = start_sip_conference(server, uas)
        # Latency on an idle server is what stalls of the VM hit first: a run during which other
        # processes and steal took > DISTURBED of a core is repeated (3 runs at most).
        tries: list[dict[str, Any]] = []
        while len(tries) < 3 and (not tries or min(_disturbance(t) for t in tries) > DISTURBED):
            with kit.timed("API -> INVITE"):
                watch = kit.Disturbance(server.pid, os.getpid())
                run = invite_latency(server, uas, path, agent, calls, warmup=20, first=10_000 * len(tries))
                run.update(watch.stop())
            tries.append(run)
        best = min(tries, key=_disturbance)
        best.pop("samples_s", None)
        results["api_to_invite"] = {
            **best,
            "runs": [(t["api_to_invite_ms"]["p99"], _disturbance(t)) for t in tries],
        }
        if profile_dir is not None:
            out_path = profile_dir / "sip-call-action.txt"
            proc = kit.start_profile(server.pid, 1000, out_path, rate=1000)  # stopped below
            time.sleep(0.3)
            run = invite_latency(server, uas, path, agent, 150, warmup=0, first=5000)
            time.sleep(0.2)
            if proc is not None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            profiles["call_action"] = {
                **kit.finish_profile(proc, out_path, 25),
                "while_sampled": run["api_to_invite_ms"],
            }
        results["server_tracebacks"] = server.tracebacks()
    finally:
        server.stop()


def start_dnsmasq(port: int, uas_port: int) -> subprocess.Popen[bytes]:
    """dnsmasq on 127.0.0.1:port answering TRUNK_NAME's SRV (the UAS) and nothing else; stopped by
    the caller through this Popen (its pid)."""
    argv = [
        shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
        "--keep-in-foreground",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--local=/test/",
        "--local-ttl=3600",
        f"--srv-host=_sip._udp.{TRUNK_NAME},uas.{TRUNK_NAME},{uas_port},10,0",
        f"--host-record=uas.{TRUNK_NAME},127.0.0.1",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # it answers within milliseconds; the first dial would retry anyway
    return proc


def dns_counters(server: kit.Server) -> dict[str, float]:
    with server.client() as client:
        text = client.get("/metrics").text
    wanted = ("bridgeline_sip_dns_lookups_total", "bridgeline_sip_dns_cache_hits_total")
    return {
        name: float(line.split()[-1])
        for line in text.splitlines()
        for name in wanted
        if line.startswith(name + " ")
    }


def api_to_invite_by_name(results: dict[str, Any], uas: Uas, calls: int, rounds: int = 4) -> None:
    if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
        results["api_to_invite_by_name"] = {"error": "dnsmasq is not installed (make deps-sip)"}
        return
    dns_port = kit.free_port(socket.SOCK_DGRAM)
    dnsmasq = start_dnsmasq(dns_port, uas.port)
    by_ip = sip_server(uas.port, kit.free_port(socket.SOCK_DGRAM), "46000-46499")
    by_name = sip_server(uas.port, kit.free_port(socket.SOCK_DGRAM), "46500-46999", f"127.0.0.1:{dns_port}")
    samples: dict[str, list[float]] = {"ip": [], "name": []}
    try:
        by_ip.start()
        by_name.start()
        conferences = {"ip": start_sip_conference(by_ip, uas), "name": start_sip_conference(by_name, uas)}
        servers = {"ip": by_ip, "name": by_name}
        before = dns_counters(by_name)  # the conference's dials looked the name up: cached from now
        with kit.timed("API -> INVITE, trunk by IP and by name"):
            watch = kit.Disturbance(by_name.pid, os.getpid())
            for n in range(rounds):
                for kind in ("ip", "name"):
                    path, agent = conferences[kind]
                    first = 30_000 + 1000 * n
                    run = invite_latency(servers[kind], uas, path, agent, calls // rounds, 5, first)
                    samples[kind] += run["samples_s"]
            disturbance = watch.stop()
        after = dns_counters(by_name)
        p99 = {kind: kit.summary_ms(values)["p99"] for kind, values in samples.items()}
        results["api_to_invite_by_name"] = {
            "rounds": rounds,
            "by_ip_ms": kit.summary_ms(samples["ip"]),
            "by_name_ms": kit.summary_ms(samples["name"]),
            "p99_by_name_over_by_ip": round(p99["name"] / p99["ip"], 3) if p99["ip"] else None,
            "dns_lookups_during": after.get("bridgeline_sip_dns_lookups_total", 0)
            - before.get("bridgeline_sip_dns_lookups_total", 0),
            "dns_cache_hits_during": after.get("bridgeline_sip_dns_cache_hits_total", 0)
            - before.get("bridgeline_sip_dns_cache_hits_total", 0),
            **disturbance,
        }
        results["server_tracebacks_by_name"] = by_ip.tracebacks() + by_name.tracebacks()
    finally:
        by_name.stop()
        by_ip.stop()
        dnsmasq.terminate()
        dnsmasq.wait(5)


def main(
    calls: int,
    rates: list[int],
    seconds: float,
    hold_ms: int,
    sustain_s: float,
    out: str | None,
    work: Path,
    profile_dir: Path | None,
) -> dict[str, Any]:
    load0 = kit.loadavg()
    results: dict[str, Any] = {"machine": kit.machine(), "pool": POOL}
    agent, customer = "+14155551001", "+14155551002"
    uas = Uas({agent, customer})
    uas.start()
    profiles: dict[str, Any] = {}
    try:
        if calls > 0:  # --calls 0: setups per second only
            api_to_invite(results, profiles, uas, calls, profile_dir)
            api_to_invite_by_name(results, uas, calls)
        if not rates:
            results["setups"] = {"skipped": "no --rates given"}
        elif shutil.which("sipp") is None:
            results["setups"] = {"error": "sipp is not installed (apt-get install sip-tester)"}
        else:
            results["setups"] = setups(uas.port, rates, seconds, hold_ms, sustain_s, work)
            if profile_dir is not None:
                # The sustainable rate, for as long as the sustained run: the transaction table then
                # holds what it holds in the steady state (a short run would understate its cost).
                st = results["setups"]
                rate = st["best_sustained_rate"] or max(25, st["best_rate_without_failure"] // 2)
                with kit.timed("profile sipp"):
                    profiles["setups"] = profile_setups(
                        uas.port, rate, sustain_s or seconds, work, profile_dir / "sip-setups.txt"
                    )
        results["profiles"] = profiles
    finally:
        uas.stop()
    results["loadavg_start"], results["loadavg_end"] = load0, kit.loadavg()
    results["command"] = (
        f".venv/bin/python bench/bench_sip.py --calls {calls} --rates {','.join(map(str, rates))}"
        f" --step {seconds:g} --hold-ms {hold_ms} --sustain {sustain_s:g}"
    )
    kit.write_result(out, "sip", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="measured `call` actions (API -> INVITE)")
    parser.add_argument("--rates", default="50,100,200,300,400", help="sipp call rates to step through")
    parser.add_argument("--step", type=float, default=5.0, help="seconds of calls per rate step")
    parser.add_argument("--hold-ms", type=int, default=0, help="pause between ACK and BYE")
    parser.add_argument("--sustain", type=float, default=40.0, help="seconds at the best rate (0: skip)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bridgeline-bench/sipp"))
    parser.add_argument("--profile-dir", type=Path, default=None, help="also profile with py-spy")
    opts = parser.parse_args()
    rates = [int(r) for r in opts.rates.split(",") if r]  # --rates "": API -> INVITE only
    main(opts.calls, rates, opts.step, opts.hold_ms, opts.sustain, opts.out, opts.work, opts.profile_dir)
