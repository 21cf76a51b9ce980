"""Helpers of the SIP end-to-end suite: a real `bridgeline serve --carrier sip` process, real SIP peers
(sipp scenarios and baresip phones; capture is pcapkit.py), and process bookkeeping.

Every process is started under `timeout` in a process group of its own, stopped by its PID at the end
of the test that started it, and checked to be gone. Everything listens on 127.0.0.1 (or ::1) only,
on ports taken from `Ports`, so tests never share a port. What each peer heard is measured in
`sipaudio`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"
LOOPBACK = "127.0.0.1"
LOOPBACK6 = "::1"
BINARIES = {
    "sipp": "/usr/bin/sipp",
    "baresip": "/usr/bin/baresip",
    "sox": "/usr/bin/sox",
    "tshark": "/usr/bin/tshark",  # reads captures (measure_setup_latency.py)
    "dumpcap": "/usr/bin/dumpcap",  # captures (Capture): tshark's own capture engine, from its package
    "openssl": "/usr/bin/openssl",  # test certificates for SIP over TLS (tlscerts.py)
}
STARTUP_TIMEOUT = 30.0


def require_binaries() -> None:
    """The peers are Debian packages (`make deps-sip`); without them the suite fails, never skips."""
    missing = [path for path in BINARIES.values() if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"SIP test peers missing: {', '.join(missing)}; install them with `make deps-sip` "
            "(apt-get install sip-tester baresip sox tshark openssl)",
            pytrace=False,
        )


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- ports
def _port_free(port: int) -> bool:
    """Free on 127.0.0.1 and, where the host has it, on ::1 (the IPv6 tests' peers bind there)."""
    for family, host in ((socket.AF_INET, LOOPBACK), (socket.AF_INET6, LOOPBACK6)):
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    # No IPv6 loopback on this host: the IPv4 check is all there is.
                    return family == socket.AF_INET6 and exc.errno in (
                        errno.EADDRNOTAVAIL,
                        errno.EAFNOSUPPORT,
                    )
    return True


def worker_band(low: int, high: int) -> tuple[int, int]:
    """This pytest-xdist worker's share of [low, high): workers of one run never probe each other's
    ports (the same split as media_engine/media_peer.py's port_range, over the same band)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    share = (high - low) // workers
    return low + worker * share, low + (worker + 1) * share


class Ports:
    """Loopback ports for one pytest process: blocks of free ports (UDP and TCP), never handed out
    twice. The starting point depends on the PID so that concurrent runs rarely even probe the same
    ports; the band stays below Linux's ephemeral ports and above Bridgeline's default RTP range, and
    each worker of a parallel run has a part of it to itself."""

    def __init__(self) -> None:
        self.low, self.high = worker_band(21000, 32000)
        self._next = self.low + (os.getpid() * 7919) % ((self.high - self.low) // 2)

    def take(self, count: int = 1, *, even: bool = False) -> int:
        for _ in range(5000):
            start = self._next + (self._next & 1 if even else 0)
            if start + count > self.high:
                start = self.low
            self._next = start + count
            if all(_port_free(p) for p in range(start, start + count)):
                return start
        raise AssertionError(f"no block of {count} free loopback ports in {self.low}-{self.high}")


def _proc_address(host: str, port: int) -> str:
    """An address and port as /proc/net/{udp,tcp}[6] spell them: the address as 32-bit words in
    host (little-endian) byte order."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    words = (packed[i : i + 4] for i in range(0, len(packed), 4))
    return f"{b''.join(bytes(reversed(w)) for w in words).hex().upper()}:{port:04X}"


def udp_bound(port: int, host: str = "127.0.0.1") -> bool:
    """Whether some process has a UDP socket bound to host:port (or any address) on it."""
    table_path = "/proc/net/udp6" if ":" in host else "/proc/net/udp"
    wanted = {_proc_address(host, port), _proc_address("::" if ":" in host else "0.0.0.0", port)}
    with open(table_path) as table:
        return any(line.split()[1] in wanted for line in list(table)[1:])


def tcp_listening(port: int, host: str = "127.0.0.1") -> bool:
    wanted = {_proc_address(host, port), f"00000000:{port:04X}"}
    with open("/proc/net/tcp") as table:
        return any(f[1] in wanted and f[3] == "0A" for f in (line.split() for line in list(table)[1:]))


def uri_host(host: str) -> str:
    """A host as a SIP URI writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


# --------------------------------------------------------------------------- processes
def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            members.append(int(entry))
    return members


class Proc:
    """One command run as `timeout -k 60 <seconds> <argv>`, in a new process group whose id is the
    PID of `timeout`. `stop()` signals that PID (timeout forwards the signal to its command), and
    SIGKILLs the group if it does not exit within its grace. timeout arms its kill-after on a
    forwarded signal too, so it must outlast every grace a test gives a clean exit (a drain, a
    cluster's Ctrl-C): with 2 s, a slow but clean stop under load showed as -9."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_dir: Path,
        timeout_s: float,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                ["timeout", "-k", "60", f"{timeout_s:g}", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s:\n{self.tail()}") from None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> int:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        return self.popen.returncode

    def leftovers(self) -> list[int]:
        """Processes still in this command's group (after it exited, nothing may be left)."""
        return _group_members(self.pid)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return (
            f"--- {self.name} stderr:\n{self.stderr()[-chars:]}\n"
            f"--- {self.name} stdout:\n{self.stdout()[-chars:]}"
        )


class ProcSet:
    """The processes one test (or one module) started; `stop_all` ends them and checks none is left."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], *, timeout_s: float, **kwargs: Any) -> Proc:
        proc = Proc(name, argv, log_dir=self.log_dir, timeout_s=timeout_s, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> list[str]:
        """Stop every process (newest first); the names of those that left processes behind."""
        for proc in reversed(self.procs):
            proc.stop()
        leaked = []
        for proc in self.procs:
            rest = proc.leftovers()
            if rest:
                leaked.append(f"{proc.name} (pids {rest})")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        return leaked

    def reports(self) -> Iterator[tuple[str, str]]:
        for proc in self.procs:
            yield proc.name, proc.tail()


# --------------------------------------------------------------------------- Bridgeline
@dataclass
class SipServer:
    """`bridgeline serve --carrier sip` with a SIP config of its own (YAML written from `config`).

    `url` and `clients` make it usable by the sim suite's `e2ekit.Api`."""

    root: Path
    ports: Ports
    procs: ProcSet
    config: dict[str, Any] = field(default_factory=dict)
    auth: tuple[str, str] = ("", "")
    rtp_ports: int = 60
    sip_host: str = LOOPBACK  # where SIP listens, and RTP unless the config's rtp.host says otherwise
    port: int = 0
    sip_port: int = 0
    rtp_low: int = 0
    proc: Proc | None = None
    clients: list[httpx.Client] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # more environment (a cluster node: its database, id)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def sip_address(self) -> str:
        return f"{uri_host(self.sip_host)}:{self.sip_port}"

    @property
    def rtp_range(self) -> range:
        return range(self.rtp_low, self.rtp_low + self.rtp_ports)

    def start(self) -> None:
        self.sip_port = self.ports.take()
        self.rtp_low = self.ports.take(self.rtp_ports, even=True)
        self.port = self.ports.take()
        self._launch()

    def kill(self) -> None:
        """kill -9: the server's process group dies at once (no BYE, nothing flushed or closed)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self, *, sip_port: int | None = None) -> None:
        """Start again on the same data directory, HTTP port and RTP range; `sip_port`: listen for
        SIP elsewhere (another node's address) instead of the same port."""
        assert self.proc is not None and not self.proc.running, "stop or kill the server first"
        if sip_port is not None:
            self.sip_port = sip_port
        self._launch()

    def _launch(self) -> None:
        config = {
            "listen": self.sip_address,
            **self.config,
            # the test's own rtp settings (a public_host) on top of the bound host and the port range
            "rtp": {
                "host": self.sip_host,
                "ports": f"{self.rtp_range[0]}-{self.rtp_range[-1]}",
                **self.config.get("rtp", {}),
            },
        }
        if "trunk" in config:  # the scripted trunks answer one call, not OPTIONS keepalives
            config["trunk"] = {"keepalive_s": 0, **config["trunk"]}
        self.root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "sip.yaml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        env = {
            **os.environ,
            "BRIDGELINE_AUTH_ID": self.auth[0],
            "BRIDGELINE_AUTH_TOKEN": self.auth[1],
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DATABASE_URL", None)
        env.update(self.env)
        argv = [
            sys.executable,
            "-m",
            "bridgeline.cli",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.root / "data"),
            "--carrier",
            "sip",
            "--sip-listen",
            self.sip_address,
            "--sip-config",
            str(config_path),
        ]
        self.proc = self.procs.start("bridgeline", argv, timeout_s=900, env=env)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if not self.proc.running:
                    raise AssertionError(f"bridgeline exited during startup:\n{self.proc.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"bridgeline did not answer /health in {STARTUP_TIMEOUT} s:\n{self.proc.tail()}")

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/health", timeout=5)
        except httpx.TransportError:
            return False
        return response.status_code == 200 and response.json() == {"status": "ok"}

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of /metrics, by name (read as the main account)."""
        response = httpx.get(f"{self.url}/metrics", auth=self.auth, timeout=5)
        assert response.status_code == 200, response.text
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if not sample.labels
        }

    def stderr(self) -> str:
        return "" if self.proc is None else self.proc.stderr()

    def stop(self) -> int:
        assert self.proc is not None
        for client in self.clients:
            client.close()
        self.clients.clear()
        return self.proc.stop(signal.SIGTERM, grace=15)


# --------------------------------------------------------------------------- sipp
_RECEIVED = re.compile(r"message received \[\d+\] bytes :\s*\n\s*(\S+) (\S+)", re.MULTILINE)
_SENT = re.compile(r"message sent \(\d+ bytes\):\s*\n\s*(\S+) (\S+)", re.MULTILINE)


class Sipp:
    """One sipp instance playing one call of a scenario from `scenarios/` (placeholders in capitals
    are substituted). A UAS scenario exits 0 only when its call went as scripted (for the talking
    phone: it was ended by a BYE); `received()` lists what it got, from its message trace."""

    def __init__(
        self,
        procs: ProcSet,
        ports: Ports,
        work: Path,
        name: str,
        scenario: str,
        *,
        substitutions: dict[str, str] | None = None,
        ring_ms: int = 0,
        remote: str | None = None,
        service: str | None = None,
        user: str | None = None,
        sip_port: int | None = None,
        calls: int = 1,
        timeout_s: int = 40,
        transport: str = "u1",
        local_ip: str = LOOPBACK,
        media_ip: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.user = user or name
        self.transport = transport  # sipp's -t: u1 (UDP), t1 (one TCP connection)
        self.local_ip = local_ip
        self.sip_port = sip_port or ports.take()
        self.media_port = ports.take(4, even=True)  # sipp binds -mp and -mp + 2 (audio, video)
        control_port = ports.take()
        self.dir = work / f"sipp-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        text = (SCENARIOS / scenario).read_text()
        for key, value in (substitutions or {}).items():
            text = text.replace(key, value)
        leftover = re.findall(r"\b(?:AUDIO_WAV|FINAL_STATUS|TRUNK_[A-Z]+|[A-Z]+_MS|CALLER_NUMBER)\b", text)
        assert not leftover, f"{scenario}: placeholders left unsubstituted: {leftover}"
        scenario_path = self.dir / scenario
        scenario_path.write_text(text)
        self.message_file = self.dir / "messages.log"
        self.error_file = self.dir / "errors.log"
        argv = ["sipp", *([remote] if remote else []), "-sf", str(scenario_path)]
        if service is not None:
            argv += ["-s", service]
        argv += [
            "-i", local_ip, "-p", str(self.sip_port), "-mi", media_ip or local_ip,
            "-mp", str(self.media_port),
            "-cp", str(control_port), "-m", str(calls), "-d", str(ring_ms), "-nostdin", "-t", transport,
            "-timeout", f"{timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.message_file),
            "-trace_err", "-error_file", str(self.error_file), *extra_args,
        ]  # fmt: skip
        self.proc = procs.start(f"sipp-{name}", argv, timeout_s=timeout_s + 10, cwd=self.dir)
        bound = tcp_listening if transport.startswith("t") else udp_bound
        wait_for(
            lambda: bound(self.sip_port, local_ip) or not self.proc.running,
            10,
            f"sipp {name} to bind {self.sip_port}",
        )
        if not self.proc.running:
            raise AssertionError(f"sipp {name} exited at start:\n{self.report()}")

    @property
    def uri(self) -> str:
        suffix = ";transport=tcp" if self.transport.startswith("t") else ""
        return f"sip:{self.user}@{uri_host(self.local_ip)}:{self.sip_port}{suffix}"

    @property
    def media_ports(self) -> set[int]:
        return {self.media_port}

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def assert_succeeded(self, timeout: float = 10.0) -> None:
        """The scenario ran to its end: for a talking phone, the call ended with a BYE it received."""
        rc = self.wait(timeout)
        assert rc == 0, f"sipp {self.name} failed (exit status {rc}):\n{self.report()}"

    def messages(self) -> str:
        return self.message_file.read_text(errors="replace") if self.message_file.exists() else ""

    def received(self) -> list[str]:
        """Methods (requests) and status codes (responses) it received, in order."""
        return [
            m.group(1) if m.group(1) != "SIP/2.0" else m.group(2) for m in _RECEIVED.finditer(self.messages())
        ]

    def sent(self) -> list[str]:
        return [
            m.group(1) if m.group(1) != "SIP/2.0" else m.group(2) for m in _SENT.finditer(self.messages())
        ]

    def received_messages(self) -> list[str]:
        """The full text of every message it received."""
        found = re.finditer(
            r"message received \[\d+\] bytes :\s*\n(.*?)(?=^-{10,}|\Z)", self.messages(), re.M | re.S
        )
        return [m.group(1).strip() for m in found]

    def report(self) -> str:
        errors = self.error_file.read_text(errors="replace") if self.error_file.exists() else ""
        return (
            f"{self.proc.tail(1500)}\n--- errors:\n{errors[-2000:]}\n--- messages:\n{self.messages()[-5000:]}"
        )


# --------------------------------------------------------------------------- baresip
class BaresipControl:
    """baresip's ctrl_tcp module: JSON commands and events in netstrings (`<len>:<json>,`)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)
        self.events: list[dict[str, Any]] = []
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._tokens = iter(range(1, 1_000_000))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            self.sock.settimeout(None)
            while chunk := self.sock.recv(65536):
                buffer += chunk
                while (colon := buffer.find(b":")) > 0:
                    size = int(buffer[:colon])
                    if len(buffer) < colon + 2 + size:
                        break
                    message = json.loads(buffer[colon + 1 : colon + 1 + size])
                    buffer = buffer[colon + 2 + size :]
                    if message.get("response"):
                        self._responses.put(message)
                    else:
                        self.events.append(message)

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        token = str(next(self._tokens))
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        deadline = time.monotonic() + timeout
        while True:
            response = self._responses.get(timeout=max(0.01, deadline - time.monotonic()))
            if response.get("token") == token:
                return response

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in list(self.events)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Baresip:
    """An auto-answering baresip phone that says a WAV (16-bit, 8 kHz) and is driven over ctrl_tcp.

    `account` is the accounts-file line; by default a phone reached directly at its own address,
    speaking `codecs` (baresip's audio_codecs: "PCMU", or "G722/16000/1" for a wideband phone).
    `sip_port`: one the test took beforehand (two in a row); `extra_config`: lines appended to the
    config file (more modules, their settings)."""

    def __init__(
        self,
        procs: ProcSet,
        ports: Ports,
        work: Path,
        name: str,
        wav: Path,
        *,
        account: str | None = None,
        codecs: str = "PCMU",
        timeout_s: int = 60,
        sip_port: int | None = None,
        extra_config: str = "",
    ) -> None:
        self.name = name
        self.sip_port = sip_port or ports.take(2)  # baresip also listens for SIP over TLS on the next port
        self.rtp_low = ports.take(4, even=True)
        control_port = ports.take()
        self.dir = work / f"baresip-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        template = (HERE / "baresip.config.template").read_text()
        config = (
            template.replace("@SIP_PORT@", str(self.sip_port))
            .replace("@RTP_PORTS@", f"{self.rtp_low}-{self.rtp_low + 3}")
            .replace("@WAV@", str(wav))
            .replace("@CTRL_PORT@", str(control_port))
        )
        (self.dir / "config").write_text(config + extra_config)
        if account is None:
            account = (
                f"<sip:{name}@{LOOPBACK}:{self.sip_port}>;regint=0;answermode=auto;audio_codecs={codecs}"
            )
        (self.dir / "accounts").write_text(account + "\n")
        (self.dir / "contacts").write_text("")
        self.proc = procs.start(f"baresip-{name}", ["baresip", "-f", str(self.dir)], timeout_s=timeout_s)
        wait_for(
            lambda: (udp_bound(self.sip_port) and tcp_listening(control_port)) or not self.proc.running,
            10,
            f"baresip {name} to listen",
        )
        if not self.proc.running:
            raise AssertionError(f"baresip {name} exited at start:\n{self.proc.tail()}")
        self.control = BaresipControl(control_port)

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@{LOOPBACK}:{self.sip_port}"

    @property
    def media_ports(self) -> set[int]:
        return set(range(self.rtp_low, self.rtp_low + 4))

    def command(self, command: str, params: str = "") -> dict[str, Any]:
        return self.control.command(command, params)

    def wait_event(self, event_type: str, timeout: float = 10.0, count: int = 1) -> None:
        wait_for(
            lambda: self.control.event_types().count(event_type) >= count,
            timeout,
            f"baresip {self.name} event {event_type} (got {self.control.event_types()})",
        )

    def stop(self) -> None:
        self.control.close()
        self.proc.stop()
