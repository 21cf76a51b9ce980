-- Many nodes on one database (issue #12): node leases, conference ownership with fencing, and the member
-- addresses of live conferences claimed across nodes.
--
-- A node (one `bridgeline serve` process) registers with a new epoch at every start and renews
-- lease_until with each heartbeat (on PostgreSQL by the database's clock). A live conference is owned
-- by (owner_node, owner_epoch); commits are written only by that owner while its lease holds.

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    internal_url TEXT NOT NULL,
    sip_address TEXT,
    state TEXT NOT NULL,
    live_conferences INTEGER NOT NULL,
    live_legs INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL
);

-- NULL for conferences from before clusters: the first node to scan claims them.
ALTER TABLE conferences ADD COLUMN owner_node TEXT;
ALTER TABLE conferences ADD COLUMN owner_epoch BIGINT;

-- Takeover scans count live conferences by owner every heartbeat: each part of the count is a range of
-- this index (status and owner_node equal, owner_epoch a range), so healthy conferences are never read.
CREATE INDEX conferences_live_owner ON conferences (status, owner_node, owner_epoch);

-- One row per member address a live conference holds (per PHLO node of an account): the primary key
-- is what makes the same address added on two cluster nodes at once have exactly one winner.
CREATE TABLE conference_addresses (
    auth_id TEXT NOT NULL,
    phlo_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    address TEXT NOT NULL,
    conference_id TEXT NOT NULL,
    PRIMARY KEY (auth_id, phlo_id, node_id, address)
);

CREATE INDEX conference_addresses_of_conference ON conference_addresses (conference_id);
