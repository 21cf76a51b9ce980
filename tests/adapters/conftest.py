"""Fixtures for the store contract suite: one store per test, on SQLite and on PostgreSQL.

PostgreSQL is expected at BRIDGELINE_TEST_POSTGRES_URL (default: local, trust auth). It is never skipped:
if it cannot be reached, the PostgreSQL tests fail loudly.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from bridgeline.adapters.store import SqlStore, open_store

ADMIN_URL = os.environ.get("BRIDGELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _database_url(name: str) -> str:
    return urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test session, dropped at its end."""
    name = f"bridgeline_test_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _database_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database's URL. The SQLite file sits in a directory the store must create itself."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'not' / 'yet' / 'there' / 'bridgeline.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # Every test starts from an empty database, so each one also exercises migrate() from scratch.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    opened = open_store(store_url)
    await opened.migrate()
    yield opened
    await opened.close()


RawQuery = Callable[[str], list[tuple[Any, ...]]]


@pytest.fixture
def raw_query(store_url: str) -> RawQuery:
    """Reads the test database behind the store's back, with the plain driver."""

    def run(query: str) -> list[tuple[Any, ...]]:
        if store_url.startswith("sqlite:///"):
            with closing(sqlite3.connect(_sqlite_path(store_url))) as connection:
                return connection.execute(query).fetchall()
        with psycopg.connect(store_url) as connection:
            return connection.execute(query.encode()).fetchall()

    return run
