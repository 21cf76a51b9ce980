"""`bridgeline serve` with the cyclic garbage collector's pauses recorded (bench instrumentation only).

A gc callback times every collection per generation; SIGUSR1 writes the counts, total and longest
pause since the previous dump to $BRIDGELINE_BENCH_GC_STATS (JSON) and starts over. The server code
is unchanged: this wrapper only registers the callback and the signal handler before calling the CLI.

Run: python bench/gcstats_serve.py serve --port 8080 ...  (then kill -USR1 <pid>)
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from typing import Any

_started = 0.0
_stats: dict[int, list[float]] = {}


def _reset() -> None:
    _stats.clear()
    _stats.update({g: [0, 0.0, 0.0, 0] for g in range(3)})  # count, total s, max s, collected objects


def _callback(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
        return
    pause = time.perf_counter() - _started
    s = _stats[int(info["generation"])]
    s[0] += 1
    s[1] += pause
    s[2] = max(s[2], pause)
    s[3] += int(info.get("collected", 0))


def _dump(signum: int, frame: object) -> None:
    path = os.environ.get("BRIDGELINE_BENCH_GC_STATS")
    if path:
        out = {
            str(g): {"collections": int(c), "total_ms": round(t * 1000, 2), "max_ms": round(m * 1000, 2)}
            for g, (c, t, m, _) in _stats.items()
        }
        out["objects"] = {"tracked": len(gc.get_objects()), "thresholds": list(gc.get_threshold())}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, path)
    _reset()


if __name__ == "__main__":
    _reset()
    gc.callbacks.append(_callback)
    signal.signal(signal.SIGUSR1, _dump)
    from bridgeline.cli import main

    sys.exit(main(sys.argv[1:]))
