"""A fixed CPU budget for a process: a cgroup-v1 CFS bandwidth limit (cpu.cfs_quota_us per
cpu.cfs_period_us) under /sys/fs/cgroup/cpu, for benchmarks that compare 1 node with 2 on a machine
that has no core to spare per node (bench_scale_out.py --node-cpu).

Every group this module makes is named `bridgeline-bench-<creator pid>-<label>`, and `QuotaGroups`
removes its groups when its `with` block ends, on an exception too (a process still inside is moved
back to the parent group first). Groups left by a creator that was killed (SIGKILL leaves no chance
to clean up) are removed by the next `QuotaGroups` once empty; nothing else under the hierarchy is
touched. The quota bounds SCHED_OTHER threads only: a SCHED_FIFO thread is bounded by the separate
real-time budget (cpu.rt_runtime_us per cpu.rt_period_us, per CPU): with `rt_period_us` a group gets
the same share of it, else (runtime 0) the kernel refuses it any real-time thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from types import FrameType, TracebackType

CPU_HIERARCHY = Path("/sys/fs/cgroup/cpu")
PREFIX = "bridgeline-bench-"


def available() -> str | None:
    """None when cgroup-v1 CPU quotas can be set here, else why not."""
    if not (CPU_HIERARCHY / "cpu.cfs_quota_us").exists():
        return f"no cgroup-v1 cpu hierarchy at {CPU_HIERARCHY} (cpu.cfs_quota_us missing)"
    if not os.access(CPU_HIERARCHY, os.W_OK):
        return f"{CPU_HIERARCHY} is not writable (run as root)"
    return None


class CpuQuota:
    """One group: `cores` of CPU time per period (0.35: 3.5 ms of every 10 ms). With `burst_us`, a
    period may also spend up to that much quota left unused by earlier periods (cpu.cfs_burst_us,
    Linux 5.14): the average stays at `cores`, but a 20 ms media tick's burst need not be cut at a
    10 ms period's boundary."""

    def __init__(
        self, path: Path, cores: float, period_us: int, burst_us: int = 0, rt_period_us: int = 0
    ) -> None:
        self.path = path
        self.cores = cores
        self.period_us = period_us
        self.burst_us = burst_us
        self.rt_period_us = rt_period_us

    def create(self) -> CpuQuota:
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
        (self.path / "cpu.cfs_quota_us").write_text(str(round(self.cores * self.period_us)))
        if self.burst_us:
            (self.path / "cpu.cfs_burst_us").write_text(str(self.burst_us))
        if self.rt_period_us:  # the same share for its SCHED_FIFO threads (per CPU), period first
            (self.path / "cpu.rt_period_us").write_text(str(self.rt_period_us))
            (self.path / "cpu.rt_runtime_us").write_text(str(round(self.cores * self.rt_period_us)))
        return self

    def add(self, pid: int) -> None:
        """Move a process, all its threads, into the group (its later threads and children follow)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def stat(self) -> dict[str, int]:
        """nr_periods, nr_throttled (periods in which the group ran out of quota), throttled_time (ns)."""
        values: dict[str, int] = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            values[key] = int(value)
        return values

    def remove(self, attempts: int = 50) -> None:
        for _ in range(attempts):
            if not self.path.exists():
                return
            for pid in _members(self.path):
                with contextlib.suppress(OSError):  # gone meanwhile
                    (self.path.parent / "cgroup.procs").write_text(str(pid))
            try:
                self.path.rmdir()
                return
            except OSError:  # EBUSY: a process is still leaving
                time.sleep(0.1)
        raise RuntimeError(f"could not remove {self.path}")


def _members(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _creator_alive(name: str) -> bool:
    pid = name.removeprefix(PREFIX).split("-", 1)[0]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


class QuotaGroups:
    """The groups of one run; all removed when the `with` block ends. SIGTERM and SIGHUP become
    SystemExit inside it, so that being stopped still runs the cleanup."""

    def __init__(
        self, cores: float, period_us: int = 10_000, burst_us: int = 0, rt_period_us: int = 0
    ) -> None:
        if not 0.01 <= cores <= (os.cpu_count() or 1):
            raise ValueError(f"a node's CPU budget must be 0.01..{os.cpu_count()} cores, not {cores}")
        if not 1_000 <= period_us <= 1_000_000:
            raise ValueError("the period must be 1,000..1,000,000 us (the kernel's limits)")
        if not 0 <= burst_us <= round(cores * period_us):
            raise ValueError("the burst may not exceed the quota (the kernel's limit)")
        self.cores = cores
        self.period_us = period_us
        self.burst_us = burst_us
        self.rt_period_us = rt_period_us  # 0: the groups' processes may not run real-time threads
        self.groups: list[CpuQuota] = []
        self._previous: dict[int, object] = {}

    def new(self, label: str, realtime: bool = False) -> CpuQuota:
        """A group; with `realtime` (and an rt_period_us), also its share of the real-time budget: the
        kernel lets all groups together have at most 95% of it, so only the groups that need it."""
        path = CPU_HIERARCHY / f"{PREFIX}{os.getpid()}-{label}-{len(self.groups)}"
        rt_period_us = self.rt_period_us if realtime else 0
        group = CpuQuota(path, self.cores, self.period_us, self.burst_us, rt_period_us)
        self.groups.append(group)  # before create(): a half-made group is removed too
        return group.create()

    def __enter__(self) -> QuotaGroups:
        reason = available()
        if reason is not None:
            raise RuntimeError(f"--node-cpu needs cgroup-v1 CPU quotas: {reason}")
        for stale in CPU_HIERARCHY.glob(f"{PREFIX}*"):
            if stale.is_dir() and not _creator_alive(stale.name) and not _members(stale):
                with contextlib.suppress(OSError):
                    stale.rmdir()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, _exit_on_signal)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        errors = []
        for group in reversed(self.groups):
            try:
                group.remove()
            except RuntimeError as error:
                errors.append(str(error))
        self.groups.clear()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if errors and kind is None:
            raise RuntimeError("; ".join(errors))


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
