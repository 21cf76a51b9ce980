-- Bridgeline's initial schema.
--
-- Portable between SQLite and PostgreSQL: only TEXT, BIGINT, INTEGER and DOUBLE PRECISION columns; JSON
-- documents are kept as TEXT and (de)serialised by the adapters. The one construct the two databases spell
-- differently, an auto-numbered primary key, is written as the token {{auto_id_primary_key}}, which the
-- migration loader replaces per dialect. Times are UNIX seconds.

CREATE TABLE accounts (
    auth_id TEXT PRIMARY KEY,
    auth_token TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

-- PHLOs can be deleted while their runs and conferences are kept as history, hence no foreign keys to them.
CREATE TABLE phlos (
    phlo_id TEXT PRIMARY KEY,
    auth_id TEXT NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX phlos_by_account ON phlos (auth_id, created_at);

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    phlo_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    conference_ids TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE conferences (
    conference_id TEXT PRIMARY KEY,
    auth_id TEXT NOT NULL,
    phlo_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    run_id TEXT,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION
);

-- Serves list_conferences (filter by node and status, newest first).
CREATE INDEX conferences_by_node ON conferences (phlo_id, node_id, status, created_at);

-- Serves load_live_conferences at start-up.
CREATE INDEX conferences_by_status ON conferences (status, created_at);

-- The primary key doubles as the "events of a conference, by seq" index.
CREATE TABLE events (
    conference_id TEXT NOT NULL REFERENCES conferences (conference_id),
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (conference_id, seq)
);

CREATE TABLE deliveries (
    delivery_id {{auto_id_primary_key}},
    conference_id TEXT NOT NULL REFERENCES conferences (conference_id),
    event_seq BIGINT NOT NULL,
    url TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    history TEXT NOT NULL
);

-- Serves due_deliveries, polled by the delivery worker.
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

CREATE INDEX deliveries_by_conference ON deliveries (conference_id, delivery_id);

CREATE TABLE sim_phones (
    address TEXT PRIMARY KEY,
    behaviour TEXT NOT NULL
);
