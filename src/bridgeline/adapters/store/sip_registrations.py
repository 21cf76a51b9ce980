"""The sip carrier's shared registrations (its `RegistrationBook` port), on both SQL dialects.

A mixin of `SqlStore`, kept apart so the store's core file does not grow with every carrier need;
it imports nothing from the carrier (the port is satisfied structurally)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from bridgeline.adapters.store import sql
from bridgeline.adapters.store.sql import Params, Row
from bridgeline.app.records import JSON

_COLUMNS = ("sip_domain", "username", "contact", "binding", "expires_at", "updated_at")
UPSERT_SIP_BINDING = (
    f"INSERT INTO sip_registrations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
    " ON CONFLICT (sip_domain, username, contact) DO UPDATE SET"
    " binding = excluded.binding, expires_at = excluded.expires_at, updated_at = excluded.updated_at"
)
DELETE_EXPIRED_SIP_BINDINGS = "DELETE FROM sip_registrations WHERE expires_at <= ?"
DELETE_SIP_BINDING = "DELETE FROM sip_registrations WHERE sip_domain = ? AND username = ? AND contact = ?"
# Exact matches on both key columns: one endpoint's binding is never another's (nor another domain's).
SELECT_SIP_BINDINGS = (
    "SELECT binding FROM sip_registrations WHERE sip_domain = ? AND username = ? AND expires_at > ?"
    " ORDER BY updated_at DESC, contact LIMIT 20"
)


class SipRegistrationRows:
    """`put_sip_binding`, `delete_sip_binding`, `sip_bindings` over the store's primitives."""

    @abstractmethod
    async def _read(self, query: str, params: Params = ()) -> list[Row]: ...

    @abstractmethod
    async def _write_statements(self, statements: Sequence[tuple[str, Params]]) -> list[int]: ...

    async def put_sip_binding(
        self, domain: str, username: str, contact: str, binding: JSON, expires_at: float, now: float
    ) -> None:
        """Insert or refresh one binding; bindings expired by `now` go in the same transaction."""
        row = (domain, username, contact, sql.dump_json(binding), float(expires_at), float(now))
        expired = (DELETE_EXPIRED_SIP_BINDINGS, (float(now),))
        await self._write_statements([expired, (UPSERT_SIP_BINDING, row)])

    async def delete_sip_binding(self, domain: str, username: str, contact: str) -> None:
        await self._write_statements([(DELETE_SIP_BINDING, (domain, username, contact))])

    async def sip_bindings(self, domain: str, username: str, now: float) -> list[JSON]:
        rows = await self._read(SELECT_SIP_BINDINGS, (domain, username, float(now)))
        return [sql.load_json(row[0]) for row in rows]
