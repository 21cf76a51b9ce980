"""The SQLite floor of one HTTP action: what the store's C code costs per action, Python aside.

Same schema and pragmas as the server (WAL, synchronous=NORMAL); 50 conferences with a 1.5 KB
snapshot each; each transaction updates K of them and appends one event each, as a group commit of
K hold/unhold actions does. Prints CPU per commit and per action, and the WAL frames each commit
wrote (one per page touched). Run: .venv/bin/python bench/sqlite_floor.py [--k 15] [--commits 400]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent.parent / "src/bridgeline/adapters/store/migrations/0001_initial.sql"
UPDATE = "UPDATE conferences SET status = ?, state = ?, updated_at = ?, ended_at = ? WHERE conference_id = ?"
INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?, ?)"


def measure(path: Path, k: int, commits: int) -> tuple[float, float]:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode = WAL",
        "synchronous = NORMAL",
        "foreign_keys = ON",
        "wal_autocheckpoint = 0",
    ):
        db.execute(f"PRAGMA {pragma}")
    db.executescript(
        SCHEMA.read_text().replace("{{auto_id_primary_key}}", "INTEGER PRIMARY KEY AUTOINCREMENT")
    )
    now = time.time()
    ids = [f"conf-{i:04d}" for i in range(50)]
    for conference_id in ids:
        row = (conference_id, "MA1", "phlo", "node", None, "live", "x" * 1500, now, now, None)
        db.execute("INSERT INTO conferences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seq = dict.fromkeys(ids, 0)
    started = time.process_time()
    for _ in range(commits):
        chosen = random.sample(ids, k)
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(UPDATE, [("live", "y" * 1500, now, None, c) for c in chosen])
        for c in chosen:
            seq[c] += 1
        db.executemany(INSERT_EVENT, [(c, seq[c], "member_hold", now, '{"member":"x"}') for c in chosen])
        db.execute("COMMIT")
    cpu = time.process_time() - started
    frames = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    db.close()
    return cpu / commits, frames / commits


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=15, help="actions per group commit")
    parser.add_argument("--commits", type=int, default=400)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        per_commit, frames = measure(Path(tmp) / "floor.db", opts.k, opts.commits)
    print(
        f"{opts.k} actions per commit: {per_commit * 1e6:.0f} us CPU per commit,"
        f" {per_commit / opts.k * 1e6:.1f} us per action, {frames:.1f} WAL frames per commit"
    )
