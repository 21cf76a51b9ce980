"""Choosing and opening a store, and the packaged migrations; the behaviour is in test_store_contract."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bridgeline.adapters.store import PostgresStore, SqliteStore, open_store
from bridgeline.adapters.store.sql import Dialect, load_migrations, split_statements
from bridgeline.app.records import Account


@pytest.mark.parametrize("url", ["mysql://localhost/db", "sqlite://", "sqlite:///", "", "file.db"])
def test_open_store_rejects_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        open_store(url)


def test_open_store_picks_postgres_for_both_schemes_without_connecting() -> None:
    assert isinstance(open_store("postgres://user@localhost:1/db"), PostgresStore)
    assert isinstance(open_store("postgresql://user@localhost:1/db"), PostgresStore)


async def test_in_memory_sqlite_works() -> None:
    store = open_store("sqlite:///:memory:")
    assert isinstance(store, SqliteStore)
    await store.migrate()
    await store.put_account(Account("MA1", "token", 1.0))
    assert await store.get_account("MA1") == Account("MA1", "token", 1.0)
    await store.close()


async def test_sqlite_file_is_created_with_its_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bridgeline.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    await store.close()
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrations_render_for_each_dialect(dialect: Dialect) -> None:
    migrations = load_migrations(dialect)
    versions = [migration.version for migration in migrations]
    # Increasing from 1; a gap is allowed (branches number their migrations apart, and every version
    # not yet recorded in schema_migrations is applied, whatever its place).
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert all("{{" not in statement for migration in migrations for statement in migration.statements)


def test_split_statements_keeps_semicolons_inside_literals_and_rejects_leftovers() -> None:
    script = (
        "-- a comment; not a statement\nCREATE TABLE t (x TEXT DEFAULT 'a;b');\n\nSELECT 1;\n-- trailing\n"
    )
    assert split_statements(script) == (
        "-- a comment; not a statement\nCREATE TABLE t (x TEXT DEFAULT 'a;b');",
        "SELECT 1;",
    )
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 1;\nSELECT 2")
