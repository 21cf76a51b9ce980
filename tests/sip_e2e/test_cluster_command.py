"""`make cluster` (tools/cluster.py): one command starts PostgreSQL's database, Kamailio and N nodes,
each answers (HTTP /health, SIP OPTIONS, Kamailio OPTIONS), and Ctrl-C stops exactly what it started."""

from __future__ import annotations

import re
import secrets
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from kamkit import REPO, cluster
from pgkit import ADMIN_URL
from psycopg import sql
from sipkit import Ports, ProcSet, wait_for

pytestmark = pytest.mark.postgres


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cluster_up_answers_and_stops_on_ctrl_c(ports: Ports, tmp_path: Path) -> None:
    name = f"bridgeline_cluster_cmd_{secrets.token_hex(6)}"  # does not exist yet: the command creates it
    database_url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    kamailio_port, http_port, sip_port = ports.take(), ports.take(2), ports.take(4)
    rtp_port = ports.take(40, even=True)
    argv = [
        sys.executable, str(REPO / "tools" / "cluster.py"), "--nodes", "2",
        "--dir", str(tmp_path / "cluster"), "--database-url", database_url,
        "--kamailio-port", str(kamailio_port), "--http-port", str(http_port), "--sip-port", str(sip_port),
        "--rtp-port", str(rtp_port), "--rtp-ports", "20", "--ping-interval-s", "1",
    ]  # fmt: skip
    procs = ProcSet(tmp_path / "logs")
    command = procs.start("cluster", argv, timeout_s=120, cwd=REPO)
    try:
        wait_for(
            lambda: "Ctrl-C stops them all" in command.stdout() or not command.running,
            60,
            "the cluster to start",
        )
        assert command.running, command.tail()
        out = command.stdout()
        pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", out)]
        assert len(pids) == 3, out  # Kamailio and two nodes
        assert f"kamailio  sip:127.0.0.1:{kamailio_port}" in out
        assert cluster.sip_options_answered(f"127.0.0.1:{kamailio_port}")
        with psycopg.connect(database_url) as connection:  # created, and migrated by the nodes
            assert connection.execute("SELECT count(*) FROM sip_registrations").fetchone() == (0,)
        for i in range(2):
            assert (
                f"node-{i + 1}    http://127.0.0.1:{http_port + i}  sip:127.0.0.1:{sip_port + 2 * i}" in out
            )
            assert httpx.get(f"http://127.0.0.1:{http_port + i}/health", timeout=5).status_code == 200
            assert cluster.sip_options_answered(f"127.0.0.1:{sip_port + 2 * i}")
            config = (tmp_path / "cluster" / f"node-{i + 1}" / "sip.yaml").read_text()
            assert f'"path_proxies": [\n      "127.0.0.1:{kamailio_port}"' in config
        # The nodes share one account: the same credentials work on both.
        auth_id, token = re.search(r"account   (\S+) (\S+)", out).groups()  # type: ignore[union-attr]
        for i in range(2):
            response = httpx.get(
                f"http://127.0.0.1:{http_port + i}/v1/phlo", auth=(auth_id, token), timeout=5
            )
            assert response.status_code == 200, response.text

        command.stop(signal.SIGINT, grace=30)  # Ctrl-C
        assert command.returncode == 0, command.tail()
        assert "stopped" in command.stdout()
        assert [pid for pid in pids if alive(pid)] == []
    finally:
        leaked = procs.stop_all()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert not leaked, leaked
