"""Durable stores: SQLite for a single process, PostgreSQL for shared deployments."""

from __future__ import annotations

from bridgeline.adapters.store.base import SqlStore
from bridgeline.adapters.store.postgres import PostgresStore
from bridgeline.adapters.store.sql import StoreIntegrityError
from bridgeline.adapters.store.sqlite import SqliteStore

__all__ = ["PostgresStore", "SqlStore", "SqliteStore", "StoreIntegrityError", "open_store"]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def open_store(url: str) -> SqlStore:
    """The store for `url`; call `await store.migrate()` before use.

    A SqlStore: every part of the app's `Store`, and the sim carrier's `PhoneBook` besides.

    - `sqlite:///relative/file.db`, `sqlite:////absolute/file.db` (SQLAlchemy's convention: the path is
      whatever follows the third slash) or `sqlite:///:memory:`;
    - `postgresql://user@host:port/dbname` or `postgres://...`, any libpq connection URI.
    """
    if url.startswith(_SQLITE_PREFIX):
        path = url.removeprefix(_SQLITE_PREFIX)
        if not path:
            raise ValueError(
                f"SQLite store URL has no file path: {url!r} (use sqlite:///:memory: for memory)"
            )
        return SqliteStore(path)
    if url.startswith(_POSTGRES_PREFIXES):
        return PostgresStore(url)
    raise ValueError(
        f"unsupported store URL {url!r}: expected sqlite:///path/to/file.db, sqlite:///:memory:, "
        "postgresql://... or postgres://..."
    )
