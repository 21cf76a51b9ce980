-- Safe retries (issue 12): the Idempotency-Key of a POST, per account, with the first answer given to it.
--
-- A row is claimed (status_code NULL: in flight) before the request runs, in a transaction of its own, so
-- the primary key decides which of two simultaneous requests with one key runs, whichever process took
-- them. claim_token names the one claim that may record the answer or give the key back; locked_until is
-- when an unanswered claim counts as abandoned (its process died). The answer (status, content type, body)
-- is replayed as it was; body is the response's UTF-8 JSON text. Times are UNIX seconds.

CREATE TABLE idempotency_keys (
    auth_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    claim_token TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    locked_until DOUBLE PRECISION NOT NULL,
    status_code INTEGER,
    content_type TEXT,
    body TEXT,
    PRIMARY KEY (auth_id, idempotency_key)
);

-- Retention: the oldest keys first, a bounded batch at a time.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
