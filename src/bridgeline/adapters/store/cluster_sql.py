"""The cluster's SQL (issue #12): node leases, fenced conference commits, claims and handoffs.

A lease is judged by "now": the database's clock on PostgreSQL (every node agrees on it), the caller's
on SQLite (one process per file). Statements are written with `{now}` where that clock is read;
`Clocked` renders the text per dialect and puts the caller's `now` among the parameters where SQLite
needs it.

`ClusterRows`, at the end, runs them: the store's node-lease and cluster-directory methods, a mixin
of `SqlStore` (base.py) that keeps them out of the store's core file.
"""

from __future__ import annotations

import re
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridgeline.adapters.store import sql
from bridgeline.adapters.store.sql import (
    CONFERENCE_CHANGING_COLUMNS,
    CONFERENCE_COLUMNS,
    Dialect,
    Params,
    Row,
)
from bridgeline.app.records import AddressOwner, ConferenceRecord, NodeLoad, NodeRecord, NodeState

_DB_NOW: dict[Dialect, str] = {
    "sqlite": "?",
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
}
# Claims skip rows another node is claiming at the same moment instead of waiting for them.
_SKIP_LOCKED: dict[Dialect, str] = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}


@dataclass(frozen=True, slots=True)
class Clocked:
    """A statement that reads the clock at each `{now}` (and may say `{skip_locked}`)."""

    template: str

    def text(self, dialect: Dialect) -> str:
        return self.template.replace("{now}", _DB_NOW[dialect]).replace(
            "{skip_locked}", _SKIP_LOCKED[dialect]
        )

    def params(self, dialect: Dialect, params: Sequence[Any], now: float) -> tuple[Any, ...]:
        """`params` for the `?` of the template; on SQLite `now` goes in at each `{now}` as well."""
        if dialect != "sqlite":
            return tuple(params)
        spliced: list[Any] = []
        given = iter(params)
        for token in re.findall(r"\?|\{now\}", self.template):
            spliced.append(float(now) if token == "{now}" else next(given))
        rest = list(given)
        if rest:
            raise ValueError(f"{len(rest)} parameters too many for {self.template[:60]!r}")
        return tuple(spliced)


NODE_COLUMNS = (
    "node_id",
    "epoch",
    "internal_url",
    "sip_address",
    "state",
    "live_conferences",
    "live_legs",
    "started_at",
    "heartbeat_at",
    "lease_until",
)
_NODE_SELECT = "SELECT " + ", ".join(f"n.{column}" for column in NODE_COLUMNS) + " FROM nodes n"

# A new life of the node: its epoch is the last one plus one, whatever the old life left behind.
REGISTER_NODE = Clocked(
    "INSERT INTO nodes ("
    + ", ".join(NODE_COLUMNS)
    + ") VALUES (?, 1, ?, ?, 'up', 0, 0, {now}, {now}, {now} + ?)"
    " ON CONFLICT (node_id) DO UPDATE SET epoch = nodes.epoch + 1, internal_url = excluded.internal_url,"
    " sip_address = excluded.sip_address, state = 'up', live_conferences = 0, live_legs = 0,"
    " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
    " lease_until = excluded.lease_until"
)
SELECT_NODE = _NODE_SELECT + " WHERE n.node_id = ?"
# A lease that expired is not renewed: others may have claimed its conferences; the node registers anew.
RENEW_NODE = Clocked(
    "UPDATE nodes SET heartbeat_at = {now}, lease_until = {now} + ?, state = ?, live_conferences = ?,"
    " live_legs = ? WHERE node_id = ? AND epoch = ? AND lease_until > {now}"
)
LEAVE_NODE = "UPDATE nodes SET lease_until = 0, state = 'draining' WHERE node_id = ? AND epoch = ?"
SELECT_LIVE_NODES = Clocked(_NODE_SELECT + " WHERE n.lease_until > {now} ORDER BY n.node_id")
_ADDRESS_KEY = "auth_id = ? AND phlo_id = ? AND node_id = ? AND address = ?"
SELECT_CONFERENCE_FOR_ADDRESS = "SELECT conference_id FROM conference_addresses WHERE " + _ADDRESS_KEY
# What forwarding asks per request, in one read: the conference holding the address and, when its
# (node, epoch) owner's lease holds, that node (NULL columns while it is between owners).
SELECT_ADDRESS_OWNER = Clocked(
    "SELECT a.conference_id, "
    + ", ".join(f"n.{column}" for column in NODE_COLUMNS)
    + " FROM conference_addresses a"
    " LEFT JOIN conferences c ON c.conference_id = a.conference_id AND c.status = 'live'"
    " LEFT JOIN nodes n ON n.node_id = c.owner_node AND n.epoch = c.owner_epoch AND n.lease_until > {now}"
    " WHERE a.auth_id = ? AND a.phlo_id = ? AND a.node_id = ? AND a.address = ?"
)

_LEASE_HELD = "EXISTS (SELECT 1 FROM nodes h WHERE h.node_id = ? AND h.epoch = ? AND h.lease_until > {now})"

# Fencing: the row is written only by its owner (node and epoch) while that node's lease holds. The lease
# gates the SELECT (so a new conference is not inserted either), the owner gates the update.
_CASTS = (
    "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT",
    "DOUBLE PRECISION", "DOUBLE PRECISION", "DOUBLE PRECISION", "TEXT", "BIGINT",
)  # fmt: skip
FENCED_CONFERENCE_COLUMNS = (*CONFERENCE_COLUMNS, "owner_node", "owner_epoch")
FENCED_UPSERT_CONFERENCE = Clocked(
    f"INSERT INTO conferences ({', '.join(FENCED_CONFERENCE_COLUMNS)}) SELECT "
    + ", ".join(f"CAST(? AS {cast})" for cast in _CASTS)
    + f" WHERE {_LEASE_HELD} ON CONFLICT (conference_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in CONFERENCE_CHANGING_COLUMNS)
    + " WHERE conferences.owner_node = excluded.owner_node AND conferences.owner_epoch = excluded.owner_epoch"
)

# An address held by this same conference is claimed again harmlessly (after a takeover the new owner
# re-claims them all); one held by another conference changes no row, which the store reports.
CLAIM_ADDRESS = (
    "INSERT INTO conference_addresses (auth_id, phlo_id, node_id, address, conference_id)"
    " VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (auth_id, phlo_id, node_id, address) DO UPDATE SET conference_id = excluded.conference_id"
    " WHERE conference_addresses.conference_id = excluded.conference_id"
)
RELEASE_ADDRESS = (
    "DELETE FROM conference_addresses WHERE auth_id = ? AND phlo_id = ? AND node_id = ? AND address = ?"
    " AND conference_id = ?"
)

# Which live conferences node (?, epoch ?) may claim: its own from an earlier epoch or handed to it (epoch
# NULL), those from before clusters (no owner), and those whose owner's lease expired or whose owner has
# since restarted (another epoch). A conference handed to a live node waits for that node.
_ORPHAN = (
    "c.status = 'live' AND ((c.owner_node = ? AND (c.owner_epoch IS NULL OR c.owner_epoch <> ?))"
    " OR c.owner_node IS NULL OR NOT EXISTS (SELECT 1 FROM nodes o WHERE o.node_id = c.owner_node"
    " AND o.lease_until > {now} AND (c.owner_epoch IS NULL OR o.epoch = c.owner_epoch)))"
)
# The same set counted cheaply, as it is every heartbeat: four disjoint parts (no owner; this node's
# earlier epochs or handed to it; owned by a node whose lease expired; by an older epoch of a live node),
# each a range of conferences_live_owner, so a node with thousands of healthy conferences counts none
# of them. (The claim itself, which runs only when this is not 0, may scan.)
_LIVE = "c.status = 'live'"
COUNT_ORPHANS = Clocked(
    f"SELECT (SELECT count(*) FROM conferences c WHERE {_LIVE} AND c.owner_node IS NULL)"
    f" + (SELECT count(*) FROM conferences c WHERE {_LIVE} AND c.owner_node = ? AND c.owner_epoch IS NULL)"
    f" + (SELECT count(*) FROM conferences c WHERE {_LIVE} AND c.owner_node = ? AND c.owner_epoch < ?)"
    # per other node (a few rows), its conferences' range: all of them if its lease expired, else those
    # of its earlier epochs
    " + (SELECT COALESCE(SUM((SELECT count(*) FROM conferences c"
    f" WHERE {_LIVE} AND c.owner_node = n.node_id)), 0) FROM nodes n"
    " WHERE n.node_id <> ? AND n.lease_until <= {now})"
    " + (SELECT COALESCE(SUM((SELECT count(*) FROM conferences c"
    f" WHERE {_LIVE} AND c.owner_node = n.node_id AND c.owner_epoch < n.epoch)), 0) FROM nodes n"
    " WHERE n.node_id <> ? AND n.lease_until > {now})"
)
CLAIM_CONFERENCES = Clocked(
    "UPDATE conferences SET owner_node = ?, owner_epoch = ? WHERE conference_id IN ("
    f"SELECT c.conference_id FROM conferences c WHERE {_ORPHAN}"
    " ORDER BY c.created_at, c.conference_id LIMIT ?{skip_locked})"
    f" AND {_LEASE_HELD} RETURNING " + ", ".join(FENCED_CONFERENCE_COLUMNS)
)
# Drain: the owner gives a conference to another node (epoch NULL until that node claims it).
HAND_OFF_CONFERENCE = Clocked(
    "UPDATE conferences SET owner_node = ?, owner_epoch = NULL WHERE conference_id = ? AND status = 'live'"
    f" AND owner_node = ? AND owner_epoch = ? AND {_LEASE_HELD}"
)

# The deliveries a node life leased and never finished, once that life's lease has ended (it died, or
# registered again with a new epoch): due now. Those already due are left to the next claim.
RELEASE_DEAD_LEASES = Clocked(
    "UPDATE deliveries SET next_attempt_at = ?, leased_node = NULL, leased_epoch = NULL"
    " WHERE status = 'pending' AND leased_node IS NOT NULL AND next_attempt_at > ?"
    " AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = deliveries.leased_node"
    " AND n.epoch = deliveries.leased_epoch AND n.lease_until > {now})"
)


def node_from_row(row: Row) -> NodeRecord:
    return NodeRecord(
        node_id=row[0],
        epoch=int(row[1]),
        internal_url=row[2],
        sip_address=row[3],
        state=NodeState(row[4]),
        live_conferences=int(row[5]),
        live_legs=int(row[6]),
        started_at=float(row[7]),
        heartbeat_at=float(row[8]),
        lease_until=float(row[9]),
    )


class ClusterRows:
    """The store's `NodeLeases` and `ClusterDirectory` parts over its primitives: node registration
    and renewal, orphans claimed, conferences handed off, who is up and who holds an address.

    A mixin of `SqlStore`, like sip_registrations.py and recordings_sql.py, so the store's core file
    does not grow with the cluster; the statements are those above."""

    dialect: Dialect

    @abstractmethod
    async def _read(self, query: str, params: Params = ()) -> list[Row]: ...

    @abstractmethod
    async def _read_one(self, query: str, params: Params) -> Row | None: ...

    @abstractmethod
    async def _write_one(self, query: str, params: Params) -> int: ...

    @abstractmethod
    async def _write_returning(self, query: str, params: Params) -> list[Row]: ...

    async def _read_clocked(self, statement: Clocked, params: Params, now: float) -> list[Row]:
        return await self._read(statement.text(self.dialect), statement.params(self.dialect, params, now))

    async def register_node(
        self, node_id: str, internal_url: str, sip_address: str | None, lease_s: float, now: float
    ) -> NodeRecord:
        statement = REGISTER_NODE
        params = statement.params(self.dialect, (node_id, internal_url, sip_address, float(lease_s)), now)
        await self._write_one(statement.text(self.dialect), params)
        row = await self._read_one(SELECT_NODE, (node_id,))
        assert row is not None
        return node_from_row(row)

    async def renew_node(self, node_id: str, epoch: int, lease_s: float, load: NodeLoad, now: float) -> bool:
        statement = RENEW_NODE
        values = (
            float(lease_s),
            NodeState(load.state).value,
            load.live_conferences,
            load.live_legs,
            node_id,
            epoch,
        )
        return (
            await self._write_one(statement.text(self.dialect), statement.params(self.dialect, values, now))
            == 1
        )

    async def count_orphans(self, node_id: str, epoch: int, now: float) -> int:
        rows = await self._read_clocked(COUNT_ORPHANS, (node_id, node_id, epoch, node_id, node_id), now)
        return int(rows[0][0])

    async def claim_conferences(
        self, node_id: str, epoch: int, limit: int, now: float
    ) -> list[ConferenceRecord]:
        if limit <= 0:
            return []
        statement = CLAIM_CONFERENCES
        values = (node_id, epoch, node_id, epoch, limit, node_id, epoch)
        rows = await self._write_returning(
            statement.text(self.dialect), statement.params(self.dialect, values, now)
        )
        records = [sql.conference_from_row(row) for row in rows]
        return sorted(records, key=lambda record: (record.created_at, record.conference_id))

    async def hand_off_conference(
        self, conference_id: str, node_id: str, epoch: int, to_node: str, now: float
    ) -> bool:
        statement = HAND_OFF_CONFERENCE
        values = (to_node, conference_id, node_id, epoch, node_id, epoch)
        return (
            await self._write_one(statement.text(self.dialect), statement.params(self.dialect, values, now))
            == 1
        )

    async def leave_cluster(self, node_id: str, epoch: int) -> None:
        await self._write_one(LEAVE_NODE, (node_id, epoch))

    async def release_dead_leases(self, now: float) -> int:
        statement = RELEASE_DEAD_LEASES
        params = statement.params(self.dialect, (float(now), float(now)), now)
        return await self._write_one(statement.text(self.dialect), params)

    async def live_nodes(self) -> list[NodeRecord]:
        rows = await self._read_clocked(SELECT_LIVE_NODES, (), time.time())
        return [node_from_row(row) for row in rows]

    async def address_owner(
        self, auth_id: str, phlo_id: str, node_id: str, address: str
    ) -> AddressOwner | None:
        statement = SELECT_ADDRESS_OWNER
        rows = await self._read_clocked(statement, (auth_id, phlo_id, node_id, address), time.time())
        if not rows:
            return None
        conference_id, *node = rows[0]
        return AddressOwner(str(conference_id), None if node[0] is None else node_from_row(node))

    async def conference_for_address(
        self, auth_id: str, phlo_id: str, node_id: str, address: str
    ) -> str | None:
        row = await self._read_one(SELECT_CONFERENCE_FOR_ADDRESS, (auth_id, phlo_id, node_id, address))
        return None if row is None else str(row[0])
