-- Recordings (issue #13): one row per recording file, conference mix or participant track. Written
-- when a recording starts (state 'recording'), finished when its file is closed ('completed' with
-- size, duration and location, or 'failed' with the reason). Rows still 'recording' at startup were
-- left by a crash: the server repairs their files and finishes them (app/recordings.py).
-- `recorder_node`: the cluster node whose writer has the file open. Times are UNIX seconds; durations milliseconds.

CREATE TABLE recordings (
    recording_id TEXT PRIMARY KEY,
    auth_id TEXT NOT NULL,
    conference_id TEXT NOT NULL,
    phlo_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    member_address TEXT,
    kind TEXT NOT NULL,
    file_format TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    duration_ms BIGINT,
    size_bytes BIGINT,
    location TEXT,
    failure_reason TEXT,
    recorder_node TEXT NOT NULL
);

CREATE INDEX recordings_by_account ON recordings (auth_id, started_at);
CREATE INDEX recordings_by_conference ON recordings (conference_id);
CREATE INDEX recordings_by_state ON recordings (state, recorder_node);
