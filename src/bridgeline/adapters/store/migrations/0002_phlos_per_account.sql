-- PHLO ids are per account: two accounts may each have a PHLO "support", and nothing tells one account
-- which ids another uses. The primary key becomes (auth_id, phlo_id); SQLite cannot change a primary key
-- in place, so the table is copied (both databases accept this form).

CREATE TABLE phlos_per_account (
    auth_id TEXT NOT NULL,
    phlo_id TEXT NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (auth_id, phlo_id)
);

INSERT INTO phlos_per_account (auth_id, phlo_id, name, definition, created_at)
SELECT auth_id, phlo_id, name, definition, created_at FROM phlos;

DROP TABLE phlos;

ALTER TABLE phlos_per_account RENAME TO phlos;

CREATE INDEX phlos_by_account ON phlos (auth_id, created_at);

-- A node's conferences are now looked up by (account, PHLO, node).
DROP INDEX conferences_by_node;

CREATE INDEX conferences_by_node ON conferences (auth_id, phlo_id, node_id, status, created_at);
