"""Shared pieces of the benchmark suite: the machine, CPU pinning, a real server process, statistics.

Nothing here imports the server's own modules: servers are started as `bridgeline serve` processes
and driven over loopback, as in tests/e2e. Every benchmark script writes its results as JSON (for
bench/run_all.py, which writes docs/benchmarks.md) and prints a readable summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable

AUTH_ID = "MABENCHACCOUNT000001"
AUTH_TOKEN = "bench-secret-token-0123456789"

# "Per core" means something only when the server and the load generator do not share a core:
# the server runs on SERVER_CPU, every load generator on LOAD_CPU (when the machine has two).
SERVER_CPU = 1
LOAD_CPU = 0


# --------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_mhz() -> float | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    return None


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpu_model": cpu_model(),
        "cpu_mhz": cpu_mhz(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def pinning_available() -> bool:
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")


def pin_prefix(cpu: int) -> list[str]:
    """`taskset -c CPU` for a child process, or nothing on a one-core machine / without taskset."""
    if pinning_available() and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def pin_self(cpu: int) -> None:
    if pinning_available():
        os.sched_setaffinity(0, {cpu})


def machine_busy_s() -> float:
    """CPU seconds all processes have used since boot (Linux /proc/stat)."""
    return cpu_times()[0]


def wait_quiet(max_wait: float = 90.0, threshold: float = 0.25, sample: float = 2.0) -> dict[str, float]:
    """Wait (at most max_wait seconds) until the machine's other work plus hypervisor steal takes
    < threshold of a core, measured over `sample` seconds; returns the wait and the last levels."""
    start = time.monotonic()
    while True:
        busy0, steal0 = cpu_times()
        time.sleep(sample)
        busy1, steal1 = cpu_times()
        busy, steal = (busy1 - busy0) / sample, (steal1 - steal0) / sample
        waited = time.monotonic() - start
        if busy + steal < threshold or waited >= max_wait:
            return {
                "waited_s": round(waited, 1),
                "busy_cores": round(busy, 2),
                "steal": round(steal, 2),
            }


def cpu_times() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot; steal is time the hypervisor took."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    # user + nice + system: what processes' utime/stime account for (irq and softirq time is not
    # charged to any process, so counting it would show our own loopback traffic as "other").
    return sum(fields[:3]) / tick, fields[7] / tick


class Disturbance:
    """What else used the machine during a window: CPU of processes other than the measured ones,
    and hypervisor steal. Large values mean the figure of that window is not trustworthy."""

    def __init__(self, *pids: int) -> None:
        self.pids = list(pids)
        self.start()

    def _own(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError):
                total += process_cpu_s(pid)
        return total

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.busy0, self.steal0 = cpu_times()
        self.own0 = self._own()

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        busy, steal = cpu_times()
        own = self._own() - self.own0
        return {
            "other_cpu_util": round(max(busy - self.busy0 - own, 0.0) / wall, 3),
            "steal_util": round((steal - self.steal0) / wall, 3),
        }


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (and its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# --------------------------------------------------------------------------- instruction counts
def callgrind_instructions(argv: Sequence[str], timeout: float = 3600) -> int:
    """All instructions of one run of `argv` under valgrind's callgrind: a count that other processes'
    load does not change. PYTHONHASHSEED is fixed so that every run lays out its dicts the same, and
    OpenBLAS (numpy's) gets one thread: its idle worker threads spin, so what they count grows with
    the run's wall time, hence with the load (two srtp_runtime_cost.py runs differed by ~100
    instructions per leg-tick in blas_thread_server alone)."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        env=os.environ | {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"},
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found.group(1).replace(",", ""))


# --------------------------------------------------------------------------- statistics
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    v = sorted(x * 1000 for x in values_s)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50": round(percentile(v, 50), 3),
        "p90": round(percentile(v, 90), 3),
        "p99": round(percentile(v, 99), 3),
        "max": round(v[-1], 3),
        "mean": round(sum(v) / len(v), 3),
    }


# --------------------------------------------------------------------------- results
def write_result(path: str | None, name: str, result: dict[str, Any]) -> None:
    """Results go to a JSON file per benchmark (for run_all.py), else to stdout only."""
    result = {"name": name, **result}
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the server process
@dataclass
class Server:
    """One `bridgeline serve` process pinned to SERVER_CPU, SQLite in a temporary data directory."""

    carrier: str = "sim"
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bridgeline-bench-")))
    gc_stats: bool = False  # run through bench/gcstats_serve.py, which records garbage-collector pauses
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def stderr_path(self) -> Path:
        return self.root / "server.stderr"

    def command(self) -> list[str]:
        entry = [str(BENCH / "gcstats_serve.py")] if self.gc_stats else ["-m", "bridgeline.cli"]
        return [
            *pin_prefix(SERVER_CPU),
            PYTHON,
            *entry,
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--carrier",
            self.carrier,
            *self.args,
        ]

    def start(self, timeout: float = 30.0) -> Server:
        self.port = free_port()
        env = {
            **os.environ,
            "BRIDGELINE_AUTH_ID": AUTH_ID,
            "BRIDGELINE_AUTH_TOKEN": AUTH_TOKEN,
            "BRIDGELINE_SIM_ANSWER_DELAY_MS": "0",
            "PYTHONUNBUFFERED": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "BRIDGELINE_BENCH_GC_STATS": str(self.root / "gc.json"),
            **self.env,
        }
        env.pop("DATABASE_URL", None)
        # stderr (the structured log) goes to a file, as it would to a log collector in production.
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.command(), env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited during startup:\n{self.stderr()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return self
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start within {timeout} s:\n{self.stderr()[-3000:]}")

    def gc_pauses(self, timeout: float = 5.0) -> dict[str, Any]:
        """Garbage-collector pauses since the previous call (gc_stats servers only), and start over."""
        path = self.root / "gc.json"
        path.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                return {"error": "no answer to SIGUSR1"}
            time.sleep(0.02)
        return dict(json.loads(path.read_text()))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def tracebacks(self) -> int:
        return self.stderr().count("Traceback")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(AUTH_ID, AUTH_TOKEN), timeout=timeout)


def create_phlo(client: httpx.Client, *, mode: str = "parallel", **node: Any) -> tuple[str, str]:
    """A one-node PHLO whose run dials {{agent}} and {{customer}}; (phlo_id, node_id)."""
    definition = {
        "name": "bench",
        "nodes": [{"name": "Multi-Party Call_1", "type": "multi_party_call", **node}],
        "run": {
            "mode": mode,
            "dial": [{"to": "{{agent}}", "role": "agent"}, {"to": "{{customer}}", "role": "customer"}],
        },
    }
    response = client.post("/v1/phlo", json=definition)
    response.raise_for_status()
    body = response.json()
    return body["phlo_id"], body["nodes"][0]["node_id"]


def create_inbound_phlo(server: Server, phlo_id: str) -> None:
    """The PHLO an inbound route starts: one node dialling nobody but the caller ({{customer}})."""
    with server.client() as client:
        definition = {
            "phlo_id": phlo_id,
            "name": "bench inbound",
            "nodes": [{"name": "Multi-Party Call_1", "type": "multi_party_call"}],
            "run": {"mode": "sequential", "dial": [{"to": "{{customer}}", "role": "customer"}]},
        }
        client.post("/v1/phlo", json=definition).raise_for_status()


def wait_connected(
    client: httpx.Client, phlo_id: str, node_id: str, addresses: Sequence[str], timeout: float = 60.0
) -> None:
    """Wait until every address is a connected member of a live conference of the node."""
    pending = list(addresses)
    deadline = time.monotonic() + timeout
    while pending:
        address = pending[-1]
        r = client.get(f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}/members/{address}")
        if r.status_code == 200 and r.json().get("status") == "connected":
            pending.pop()
            continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"{address} not connected after {timeout} s: {r.status_code} {r.text}")
        time.sleep(0.02)


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    print(f"[{label}: {time.monotonic() - start:.1f} s]", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- PostgreSQL
POSTGRES_ADMIN_URL = os.environ.get(
    "BRIDGELINE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def fresh_database(prefix: str = "bridgeline_bench") -> Iterator[str]:
    """A new database on this machine's PostgreSQL; its URL, dropped (WITH FORCE) at the end."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --------------------------------------------------------------------------- load generator, profiler
def run_load(spec: dict[str, Any], *, cpu: int | None = LOAD_CPU, nice: int = 0) -> dict[str, Any]:
    """bench/httpload.py in its own process on the load core (None: any core); its JSON answer."""
    budget = float(spec["warmup_s"]) + float(spec["measure_s"]) + 60
    prefix = (pin_prefix(cpu) if cpu is not None else []) + (["nice", "-n", str(nice)] if nice else [])
    done = subprocess.run(
        [*prefix, PYTHON, str(BENCH / "httpload.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"httpload failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout))


def basic_auth(auth_id: str = AUTH_ID, token: str = AUTH_TOKEN) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{auth_id}:{token}".encode()).decode()


def py_spy() -> str | None:
    candidate = Path(PYTHON).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def start_profile(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen[bytes] | None:
    """py-spy record (collapsed stacks) for `seconds`. py-spy pauses the target for each sample
    (non-blocking mode gives torn stacks): the throughput while sampled is reported beside it."""
    exe = py_spy()
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        *pin_prefix(LOAD_CPU),
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_profile(proc: subprocess.Popen[bytes] | None, out: Path, top: int = 15) -> dict[str, Any]:
    if proc is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": "py-spy did not finish"}
    if not out.exists():
        return {"error": f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"}
    return analyse_collapsed(out, top)


def _frame_name(frame: str) -> str:
    """'mix_inputs (bridgeline/media/mixer.py:88)' -> 'mixer.py:mix_inputs'."""
    name, _, where = frame.partition(" (")
    file = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{file}:{name.strip()}" if file else name.strip()


# Where a sample's own time is spent, by the file of its innermost Python frame. C calls (SQLite,
# socket syscalls, numpy kernels) count for the Python function that made them.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("bridgeline/sip/", "SIP stack (bridgeline.sip)"),
    ("bridgeline/adapters/store/", "store: SQLite calls, rows (adapters/store)"),
    ("bridgeline/adapters/http/", "HTTP adapter (adapters/http)"),
    ("bridgeline/adapters/carriers/sip/rtp_udp", "media shell: sockets, thread (adapters/carriers/sip)"),
    ("bridgeline/adapters/carriers/sip/media_", "media shell: sockets, thread (adapters/carriers/sip)"),
    ("bridgeline/media/routes", "media tick: routes, mixing (media/routes.py, media/runtime.py)"),
    ("bridgeline/media/runtime", "media tick: routes, mixing (media/routes.py, media/runtime.py)"),
    ("bridgeline/media/", "media: jitter, G.711, mixer (bridgeline.media)"),
    ("bridgeline/core/", "conference core (bridgeline.core)"),
    ("bridgeline/app/", "application service (bridgeline.app)"),
    ("bridgeline/", "other Bridgeline code"),
    ("uvicorn/", "uvicorn (HTTP server; httptools parser)"),
    ("h11/", "uvicorn (HTTP server; httptools parser)"),
    ("httptools/", "uvicorn (HTTP server; httptools parser)"),
    ("uvloop/", "event loop (uvloop) and transports"),
    ("starlette/", "starlette (requests, responses)"),
    ("pydantic", "pydantic (PHLO definition validation)"),
    ("structlog/", "structlog (logging)"),
    ("json/", "json (encode, decode)"),
    ("dataclasses", "dataclasses, copy (snapshot dump, records)"),
    ("copy.py", "dataclasses, copy (snapshot dump, records)"),
    ("<string>", "dataclasses, copy (snapshot dump, records)"),
    ("numpy/", "numpy"),
    ("asyncio/", "event loop (uvloop) and transports"),
    ("selectors", "event loop (uvloop) and transports"),
    ("socket.py", "event loop (uvloop) and transports"),
    ("uuid", "uuid, datetime, enum"),
    ("enum", "uuid, datetime, enum"),
)


def category(frame: str) -> str:
    where = frame.partition(" (")[2]
    for prefix, label in CATEGORIES:
        if where.startswith(prefix):
            return label
    return "other (stdlib and the rest)"


EVENT_LOOP_FRAME = "base_events.py:BaseEventLoop._run_once"


def analyse_collapsed(path: Path, top: int = 15, thread_frame: str = EVENT_LOOP_FRAME) -> dict[str, Any]:
    """Self and inclusive shares of functions in py-spy's collapsed stacks (active samples only),
    counting only stacks through `thread_frame`: the event loop's thread, not helper threads
    (asyncio's child watcher, executor workers) that py-spy may see as busy in a blocking call."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    cat_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = stack.split(";")
        frames = [_frame_name(f) for f in raw]
        if not frames or thread_frame not in frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        cat = category(raw[-1])
        cat_counts[cat] = cat_counts.get(cat, 0) + count
        for name in set(frames):
            incl_counts[name] = incl_counts.get(name, 0) + count

    def share(counts: dict[str, int], limit: int | None = top, floor: float = 0.0) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        shares = [(name, round(100 * n / max(total, 1), 1)) for name, n in ranked]
        shares = [(name, pct) for name, pct in shares if pct >= floor]
        return shares if limit is None else shares[:limit]

    return {
        "samples": total,
        "self": share(self_counts),
        "categories": share(cat_counts, None),
        "inclusive": share(incl_counts, None, floor=0.5),
        "file": str(path),
    }


def share_of(profile: dict[str, Any], name: str, kind: str = "inclusive") -> float:
    """A function's (or category's) share of a profile's samples, in %; 0 when absent."""
    return float(dict(profile.get(kind, [])).get(name, 0.0))
