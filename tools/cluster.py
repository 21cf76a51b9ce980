"""A local Bridgeline cluster for development: PostgreSQL, Kamailio in front, N nodes.

    .venv/bin/python tools/cluster.py --nodes 3        (or: make cluster NODES=3)

It creates the database if it is missing (the local PostgreSQL; `--database-url` or
BRIDGELINE_CLUSTER_DATABASE_URL to use another), writes each node's SIP YAML (its own SIP port and
RTP port range, Kamailio trusted for Path and as the trunk), renders deploy/kamailio/ for these
nodes, starts Kamailio and the nodes, waits until each answers (HTTP /health; Kamailio: OPTIONS),
prints their addresses, and on Ctrl-C (SIGINT) or SIGTERM stops the processes it started, by pid.
Everything it writes is under `--dir` (default ./cluster). docs/cluster.md explains the pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
KAMAILIO_TEMPLATE = REPO / "deploy" / "kamailio" / "kamailio.cfg"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bridgeline_cluster"
RTP_PORTS_PER_NODE = 1000
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    host: str
    http_port: int
    sip_port: int
    rtp_low: int
    rtp_high: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def sip_address(self) -> str:
        return f"{self.host}:{self.sip_port}"


def plan_nodes(
    count: int, host: str, http_port: int, sip_port: int, rtp_port: int, rtp_ports: int = RTP_PORTS_PER_NODE
) -> list[Node]:
    """node-1..node-N on consecutive HTTP ports, SIP ports two apart, RTP ranges side by side."""
    return [
        Node(
            f"node-{i + 1}",
            host,
            http_port + i,
            sip_port + 2 * i,
            rtp_port + i * rtp_ports,
            rtp_port + (i + 1) * rtp_ports - 1,
        )
        for i in range(count)
    ]


def render_kamailio(
    listen: str, run_dir: Path, *, ping_interval_s: int = 2, failover_timeout_ms: int = 2000
) -> str:
    """deploy/kamailio/kamailio.cfg with its placeholders filled in (listen: host:port, UDP)."""
    text = KAMAILIO_TEMPLATE.read_text()
    for key, value in {
        "@LISTEN@": f"udp:{listen}",
        "@RUN_DIR@": str(run_dir),
        "@PING_INTERVAL_S@": str(ping_interval_s),
        "@FAILOVER_TIMEOUT_MS@": str(failover_timeout_ms),
    }.items():
        text = text.replace(key, value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"kamailio.cfg: placeholders left unfilled: {left}")
    return text


def render_dispatcher(nodes: list[tuple[str, str]]) -> str:
    """dispatcher.list for set 1: (node_id, SIP host:port) per node, in this order."""
    lines = ["# setid destination flags priority attributes (written by tools/cluster.py)"]
    lines += [f"1 sip:{address} 0 0 duid={node_id}" for node_id, address in nodes]
    return "\n".join(lines) + "\n"


def node_sip_config(node: Node, kamailio: str, base: dict[str, Any]) -> dict[str, Any]:
    """A node's SIP YAML: the shared base (endpoints, inbound numbers, trunk settings) with this
    node's addresses, and Kamailio as the trunk proxy (calls it relays are the trunk's) and as the
    proxy whose Path REGISTERs keep."""
    config = dict(base)
    config["listen"] = node.sip_address
    config["rtp"] = {**base.get("rtp", {}), "host": node.host, "ports": f"{node.rtp_low}-{node.rtp_high}"}
    config["trunk"] = {"domain": "trunk.invalid", **base.get("trunk", {}), "proxy": kamailio}
    config["registrations"] = {**base.get("registrations", {}), "path_proxies": [kamailio]}
    return config


def ensure_database(url: str) -> None:
    """CREATE DATABASE when it does not exist yet (connecting to the server's `postgres` database)."""
    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    admin_url = urlsplit(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}", flush=True)


def sip_options_answered(address: str, timeout: float = 1.0) -> bool:
    """Whether host:port answers an OPTIONS with 200 (over UDP)."""
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local_port = sock.getsockname()[1]
        call_id = secrets.token_hex(8)
        request = (
            f"OPTIONS sip:{address} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local_port};branch=z9hG4bK{call_id};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:cluster@{host}>;tag={call_id}\r\nTo: <sip:{address}>\r\n"
            f"Call-ID: {call_id}@{host}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(request.encode(), (host, int(port)))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return False
    return data.startswith(b"SIP/2.0 200")


def http_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Cluster:
    """The processes this command started; `stop` ends them (SIGTERM, then SIGKILL), by pid."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        # A session of its own: Ctrl-C reaches this command only, which stops the others in order.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def wait_until(self, what: str, ready: Any, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; see {self.work}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer in {STARTUP_TIMEOUT_S:g} s; see {self.work}")
            time.sleep(0.1)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} (pid {proc.pid}) did not stop: killed", flush=True)
                proc.kill()
                proc.wait()


def up(args: argparse.Namespace) -> int:
    work = Path(args.dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    kamailio_bin = shutil.which("kamailio") or "/usr/sbin/kamailio"
    database_url = args.database_url
    ensure_database(database_url)
    base: dict[str, Any] = {}
    if args.sip_base:
        import yaml

        base = yaml.safe_load(Path(args.sip_base).read_text()) or {}
    nodes = plan_nodes(args.nodes, args.host, args.http_port, args.sip_port, args.rtp_port, args.rtp_ports)
    kamailio = f"{args.host}:{args.kamailio_port}"
    kam_dir = work / "kamailio"
    kam_dir.mkdir(exist_ok=True)
    (kam_dir / "kamailio.cfg").write_text(
        render_kamailio(kamailio, kam_dir, ping_interval_s=args.ping_interval_s)
    )
    (kam_dir / "dispatcher.list").write_text(render_dispatcher([(n.node_id, n.sip_address) for n in nodes]))
    auth_id = os.environ.get("BRIDGELINE_AUTH_ID") or "MA" + secrets.token_hex(9).upper()
    auth_token = os.environ.get("BRIDGELINE_AUTH_TOKEN") or secrets.token_urlsafe(30)
    cluster = Cluster(work)
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        argv = [kamailio_bin, "-DD", "-E", "-f", str(kam_dir / "kamailio.cfg"), "-P", str(kam_dir / "pid")]
        kam = cluster.start("kamailio", [*argv, "-Y", str(kam_dir)])
        for node in nodes:
            node_dir = work / node.node_id
            node_dir.mkdir(exist_ok=True)
            config_path = node_dir / "sip.yaml"
            config = node_sip_config(node, kamailio, base)
            config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "BRIDGELINE_AUTH_ID": auth_id,
                "BRIDGELINE_AUTH_TOKEN": auth_token,
                "BRIDGELINE_NODE_ID": node.node_id,
                "BRIDGELINE_INTERNAL_URL": node.url,
            }
            argv = [sys.executable, "-m", "bridgeline.cli", "serve", "--host", node.host]
            argv += ["--port", str(node.http_port), "--data-dir", str(node_dir / "data"), "--carrier", "sip"]
            argv += ["--sip-config", str(config_path)]
            cluster.start(node.node_id, argv, env)
        for (name, proc), node in zip(cluster.procs[1:], nodes, strict=True):
            cluster.wait_until(name, lambda n=node: http_healthy(n.url), proc)
        cluster.wait_until("kamailio", lambda: sip_options_answered(kamailio), kam)
        print(f"database  {database_url}", flush=True)
        print(f"account   {auth_id} {auth_token}", flush=True)
        print(f"kamailio  sip:{kamailio} (pid {kam.pid})", flush=True)
        for (_, proc), node in zip(cluster.procs[1:], nodes, strict=True):
            rtp = f"rtp {node.rtp_low}-{node.rtp_high}"
            print(f"{node.node_id:<9} {node.url}  sip:{node.sip_address}  {rtp} (pid {proc.pid})", flush=True)
        print(f"logs in {work}; Ctrl-C stops them all", flush=True)
        while not stop_requested:
            gone = [name for name, proc in cluster.procs if proc.poll() is not None]
            if gone:
                print(f"exited: {', '.join(gone)}; stopping the others", flush=True)
                return 1
            time.sleep(0.2)
        return 0
    except RuntimeError as exc:
        print(f"cluster: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        cluster.stop()
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--database-url", default=os.environ.get("BRIDGELINE_CLUSTER_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--dir", default="cluster", help="where configs and logs go (default ./cluster)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--kamailio-port", type=int, default=5060)
    parser.add_argument("--http-port", type=int, default=8081, help="node 1's; the next nodes count up")
    parser.add_argument("--sip-port", type=int, default=5070, help="node 1's; the next nodes add 2")
    parser.add_argument("--rtp-port", type=int, default=20000, help="node 1's RTP range starts here")
    parser.add_argument("--rtp-ports", type=int, default=RTP_PORTS_PER_NODE, help="RTP ports per node (even)")
    parser.add_argument("--ping-interval-s", type=int, default=2, help="Kamailio's OPTIONS probes")
    parser.add_argument("--sip-base", help="SIP YAML shared by the nodes (endpoints, inbound, trunk...)")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 32:
        parser.error("--nodes: 1 to 32")
    if args.rtp_ports < 2 or args.rtp_ports % 2:
        parser.error("--rtp-ports: an even number, at least 2")
    return up(args)


if __name__ == "__main__":
    sys.exit(main())
