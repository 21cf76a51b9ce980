"""`bridgeline nodes`: the live nodes of the cluster, read through the store's ClusterDirectory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridgeline.adapters.store import open_store
from bridgeline.app.records import NodeLoad, NodeState
from bridgeline.cli.commands import main


def test_lists_the_nodes_whose_lease_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def nodes() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'bridgeline.db'}")
        await store.migrate()
        await store.register_node("gone", "http://10.0.0.9:8080", None, 0.01, time.time() - 60)
        await store.register_node("b", "http://10.0.0.2:8080", "10.0.0.2:5060", 30.0, time.time())
        await store.register_node("b", "http://10.0.0.2:8080", "10.0.0.2:5060", 30.0, time.time())
        await store.renew_node("b", 2, 30.0, NodeLoad(NodeState.DRAINING, 4, 9), time.time())
        await store.close()

    asyncio.run(nodes())
    assert main(["nodes", "--data-dir", str(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("b  2  draining  4 conferences  9 legs  http://10.0.0.2:8080  lease ")
