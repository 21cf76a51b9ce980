"""Idempotency-Key across two server processes on one PostgreSQL database: of concurrent requests with
one key, exactly one runs, whichever process each reaches; a retry at the other process while the first
still runs is a 409, and once it has answered, the retry gets its answer.

Needs the local PostgreSQL server (127.0.0.1:5432, user postgres, trust auth); never skipped."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from e2ekit import Api, Phlo, ServerProcess, assert_plivo_error, number, wait_until
from pgkit import database_url

pytestmark = pytest.mark.postgres
__all__ = ["database_url"]  # a fixture, used by name

KEY = "Idempotency-Key"
REPLAYED = "idempotent-replayed"
CONCURRENT = 8  # requests with one key, spread over the two processes


def two_nodes(database_url: str, server_factory: Callable[..., ServerProcess]) -> tuple[Api, Api]:
    # two nodes of one cluster: each its own node id (docs/cluster.md)
    first = server_factory(env={"DATABASE_URL": database_url, "BRIDGELINE_NODE_ID": "node-1"})
    second = server_factory(
        data_dir=first.data_dir.parent / "data-2",
        env={"DATABASE_URL": database_url, "BRIDGELINE_NODE_ID": "node-2"},
    )
    return Api(first), Api(second)


def run_path(phlo: Phlo) -> str:
    return f"/v1/account/{phlo.api.auth_id}/phlo/{phlo.phlo_id}"


def runs_of(database_url: str, phlo: Phlo) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM runs WHERE phlo_id = %s", (phlo.phlo_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_requests_with_one_key_on_two_processes_run_once(
    database_url: str,  # first: the database outlives the servers
    server_factory: Callable[..., ServerProcess],
) -> None:
    a, b = two_nodes(database_url, server_factory)
    phlo = a.create_phlo()
    payload = {"agent": number(), "customer": number()}
    key = str(uuid.uuid4())
    start = threading.Barrier(CONCURRENT)

    def send(index: int) -> httpx.Response:
        node = (a, b)[index % 2]
        start.wait(timeout=10)
        return node.http.post(run_path(phlo), json=payload, headers={KEY: key})

    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(send, range(CONCURRENT)))
    ran = [r for r in answers if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(ran) == 1, [(r.status_code, r.text) for r in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert_plivo_error(answer, 409)
        else:
            assert (answer.status_code, answer.content) == (201, ran[0].content)
    assert runs_of(database_url, phlo) == 1
    for node in (a, b):  # every retry now, at either process, gets the one answer
        retry = node.http.post(run_path(phlo), json=payload, headers={KEY: key})
        assert (retry.status_code, retry.content, retry.headers[REPLAYED]) == (201, ran[0].content, "true")
    assert runs_of(database_url, phlo) == 1


def test_a_retry_at_another_process_while_the_first_runs_is_a_409(
    database_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    """The first request is held inside its run (the test locks the runs table) while its retry reaches
    the other process."""
    a, b = two_nodes(database_url, server_factory)
    phlo = a.create_phlo()
    payload = {"agent": number(), "customer": number()}
    key = str(uuid.uuid4())
    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(1) as pool:
        locker.execute("LOCK TABLE runs IN EXCLUSIVE MODE")  # held until this transaction ends
        first = pool.submit(a.http.post, run_path(phlo), json=payload, headers={KEY: key})
        with psycopg.connect(database_url, autocommit=True) as watcher:
            wait_until(
                lambda: (
                    watcher.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                        " WHERE c.relname = 'runs' AND NOT l.granted"
                    ).fetchone()
                    == (1,)
                ),
                timeout=10,
                what="the first request waiting to write its run",
            )
        during = b.http.post(run_path(phlo), json=payload, headers={KEY: key})
        error = assert_plivo_error(during, 409)
        assert "in progress" in error["error"] and during.headers["retry-after"] == "1"
        locker.rollback()  # releases the lock: the first request goes on
        answered = first.result(timeout=10)
    assert answered.status_code == 201, answered.text
    retry = b.http.post(run_path(phlo), json=payload, headers={KEY: key})
    assert (retry.status_code, retry.content, retry.headers[REPLAYED]) == (201, answered.content, "true")
    assert runs_of(database_url, phlo) == 1
