"""A fresh PostgreSQL database per test, on this machine's server (127.0.0.1:5432, user postgres, trust
auth; BRIDGELINE_TEST_POSTGRES_URL overrides), dropped at the end even if a process still holds it."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

ADMIN_URL = os.environ.get("BRIDGELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def fresh_database(prefix: str = "bridgeline_e2e") -> Iterator[str]:
    """A new database's URL; dropped (WITH FORCE) when the block ends."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url() -> Iterator[str]:
    """Ask for it first: the database outlives the servers of the test (they stop before it is dropped)."""
    with fresh_database() as url:
        yield url
