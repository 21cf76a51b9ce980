-- The delivery worker and retention (issue 9). Independent of 0002 (PHLO ids per account).
--
-- Partial indexes on the pending rows: they stay as small as the outbox's live part, however many
-- finished deliveries are kept. Queries must spell the predicate `status = 'pending'` literally for
-- SQLite to use them.

-- Pending deliveries by due time: the worker reads a bounded page of the most overdue first.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_at, delivery_id) WHERE status = 'pending';

-- One (conference, URL) queue's pending deliveries in event order: "is there an earlier one?" and
-- "which one is next?" without reading the queue's finished rows.
CREATE INDEX deliveries_pending_queue ON deliveries (conference_id, url, delivery_id) WHERE status = 'pending';

-- Retention: ended conferences by end time, finished runs by last change, running runs for reconciling.
CREATE INDEX conferences_ended ON conferences (ended_at) WHERE status = 'ended';
CREATE INDEX runs_finished ON runs (updated_at) WHERE status <> 'running';
CREATE INDEX runs_running ON runs (created_at) WHERE status = 'running';
