"""Moving SQLite's WAL into the database file on a thread of its own, off the event loop.

SQLite checkpoints on its own from inside a COMMIT once the WAL passes 1000 pages: that COMMIT then
copies pages and syncs the file, and under load it stalled the event loop for 3-10 ms every few dozen
commits (the tail of every request waiting behind it). Here a thread with its own connection runs a
PASSIVE checkpoint (it never blocks the writer) at most every `interval` seconds while there are
commits; sqlite3 releases the GIL while SQLite works, so the loop keeps serving meanwhile. Checkpoints
spaced out also copy a page written many times once.
"""

from __future__ import annotations

import sqlite3
import threading

import structlog

log = structlog.get_logger(__name__)

# The writer's own automatic checkpoint stays as a backstop, far above what the thread lets the WAL
# grow to, in case the thread falls behind.
BACKSTOP_PAGES = 20_000


class Checkpointer:
    def __init__(self, path: str, interval: float = 0.5) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Called after each commit: a checkpoint is due within `interval`."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._connection.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                log.exception("sqlite_checkpoint_failed")
            # A commit in the meantime does not cut the pause short (it sets _wake, not _stop).
            if self._stop.wait(self._interval):
                return
