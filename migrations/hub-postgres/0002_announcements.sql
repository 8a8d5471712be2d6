-- A heartbeat rewrites a peer's row (its last-seen time moves) without changing what the peer
-- announces. `announcement` is a digest of what it announces, and `changed_version` the version
-- at which that last changed (or the peer came online): a stream resuming from a version is
-- sent only the peers whose announcement changed since, not every peer that sent a heartbeat.
ALTER TABLE peers ADD COLUMN announcement text NOT NULL DEFAULT '';
ALTER TABLE peers ADD COLUMN changed_version bigint NOT NULL DEFAULT 0;
UPDATE peers SET changed_version = version;
