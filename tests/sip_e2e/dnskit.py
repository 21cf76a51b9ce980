"""A real DNS server for the tests: dnsmasq on 127.0.0.1 with the records a test gives it (no
upstream, no /etc/hosts, no config file), started and stopped by its pid; and a UDP socket that
swallows queries (a nameserver that never answers)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import dns.message
import dns.query
import dns.rdatatype

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
LOOPBACK = "127.0.0.1"
READY = "ready.invalid"  # what the start-up probe asks


def free_udp_port() -> int:
    """A port free on 127.0.0.1 for UDP and TCP both: dnsmasq listens on both."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((LOOPBACK, port))
            except OSError:
                continue  # taken for TCP (a SIP listener of another test): pick again
        return port


def srv(name: str, target: str, port: int, priority: int, weight: int = 0) -> str:
    return f"--srv-host={name},{target},{port},{priority},{weight}"


def naptr(name: str, order: int, preference: int, service: str, replacement: str) -> str:
    return f"--naptr-record={name},{order},{preference},S,{service},,{replacement}"


def host(name: str, address: str) -> str:
    return f"--host-record={name},{address}"


class Dnsmasq:
    """`dnsmasq` in the foreground answering `records` (dnsmasq options) on 127.0.0.1:port, and
    authoritative for `zone`: any other name there is NXDOMAIN (not REFUSED, as with no upstream)."""

    def __init__(
        self,
        records: list[str],
        *,
        zone: str = "test",
        port: int | None = None,
        ttl: int = 300,
        log: Path | None = None,
    ) -> None:
        self.port = port or free_udp_port()
        self.log = log
        argv = [
            DNSMASQ,
            "--keep-in-foreground",
            f"--port={self.port}",
            f"--listen-address={LOOPBACK}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",  # no pid file: we hold the process
            "--log-queries",
            "--log-facility=-",
            f"--local-ttl={ttl}",
            f"--local=/{zone}/",
            *records,
        ]
        self._log_file = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # the process, and the log file, whatever went wrong
            raise

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _wait_ready(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        query = dns.message.make_query(READY, dns.rdatatype.A)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited with {self.proc.returncode}: {self.log_text()}")
            with contextlib.suppress(OSError, dns.exception.Timeout):
                dns.query.udp(query, LOOPBACK, timeout=0.2, port=self.port)
                return
            time.sleep(0.05)
        raise AssertionError(f"dnsmasq did not answer on {self.address} in {timeout} s")

    def queries(self) -> list[str]:
        """The questions it was asked, e.g. `query[SRV] _sip._udp.example.test`."""
        return [
            line.split(": ", 1)[1].rsplit(" from ", 1)[0]
            for line in self.log_text().splitlines()
            if "query[" in line and READY not in line
        ]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # by its pid: the Popen we started
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not isinstance(self._log_file, int):
            self._log_file.close()

    def __enter__(self) -> Dnsmasq:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()


class SilentNameserver:
    """A UDP socket on 127.0.0.1 that takes queries and never answers; counts what it swallowed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def swallowed(self) -> int:
        count = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(4096)
                count += 1
        return count

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentNameserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
