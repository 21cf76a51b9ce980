-- Who leased a pending delivery: the claiming node and its epoch (issue #12). A node that dies while
-- posting callbacks leaves them leased; with the holder known, they are due again as soon as that
-- node's lease ends, instead of when the delivery's own (much longer) lease would.

ALTER TABLE deliveries ADD COLUMN leased_node TEXT;
ALTER TABLE deliveries ADD COLUMN leased_epoch BIGINT;
CREATE INDEX deliveries_leased ON deliveries (leased_node) WHERE leased_node IS NOT NULL;
