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

-- Virtual phones (sim carrier) are per account too: an account's settings apply to its own calls only.
-- A phone configured before this migration was shared by every account, so each existing account gets
-- a copy of it, and nobody's calls change behaviour.
CREATE TABLE sim_phones_per_account (
    auth_id TEXT NOT NULL,
    address TEXT NOT NULL,
    behaviour TEXT NOT NULL,
    PRIMARY KEY (auth_id, address)
);

INSERT INTO sim_phones_per_account (auth_id, address, behaviour)
SELECT accounts.auth_id, sim_phones.address, sim_phones.behaviour FROM sim_phones CROSS JOIN accounts;

DROP TABLE sim_phones;

ALTER TABLE sim_phones_per_account RENAME TO sim_phones;
