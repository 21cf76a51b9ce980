"""The SQL of the cluster's reads (issue #12): another node's events, and the outbox's backlog.

Same conventions as sql.py: `?` placeholders, one text for SQLite and PostgreSQL.
"""

from __future__ import annotations

from bridgeline.adapters.store.sql import EVENT_COLUMNS

# A bounded slice of one conference's events, in order (the events primary key serves it).
SELECT_EVENTS_BETWEEN = (
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
    " WHERE conference_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
# The event feed's poll (other nodes' events): each conference's last event seq, a keyset page at a time,
# live ones by creation (conferences_by_status) and recently ended ones by end (conferences_ended).
_LAST_SEQ = "COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.conference_id = c.conference_id), 0)"
SELECT_LIVE_MARKS = (
    f"SELECT c.conference_id, c.auth_id, c.created_at, {_LAST_SEQ} FROM conferences c"
    " WHERE c.status = 'live' AND c.created_at >= ? AND (c.created_at > ? OR c.conference_id > ?)"
    " ORDER BY c.created_at, c.conference_id LIMIT ?"
)
SELECT_ENDED_MARKS = (
    f"SELECT c.conference_id, c.auth_id, c.ended_at, {_LAST_SEQ} FROM conferences c"
    " WHERE c.status = 'ended' AND c.ended_at >= ? AND (c.ended_at > ? OR c.conference_id > ?)"
    " ORDER BY c.ended_at, c.conference_id LIMIT ?"
)
# The outbox's backlog for /metrics: how many deliveries are pending, and when the most overdue was due.
SELECT_OUTBOX_BACKLOG = (
    "SELECT COUNT(*), MIN(CASE WHEN next_attempt_at < ? THEN next_attempt_at END)"
    " FROM deliveries WHERE status = 'pending'"
)
