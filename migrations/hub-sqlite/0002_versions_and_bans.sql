-- Versions come from counters in hub_meta rather than MAX(version): pruning old rows can lower
-- a MAX, and a version handed out twice would be skipped by instances that read past it.
-- hub_meta also names this database in event ids (`cluster`), so an id from one database is
-- never taken for a position in another, and records how far tombstones were pruned.
CREATE TABLE hub_meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    cluster        TEXT NOT NULL,
    peer_version   INTEGER NOT NULL,
    ban_version    INTEGER NOT NULL,
    -- Resuming a stream from a version at or below this one needs a snapshot.
    pruned_version INTEGER NOT NULL
);

INSERT INTO hub_meta (id, cluster, peer_version, ban_version, pruned_version)
SELECT 1, lower(hex(randomblob(6))), COALESCE(MAX(version), 0), 0, COALESCE(MAX(version), 0)
FROM peers;

-- Bans travel between instances like peers: every write takes the next ban version, and a
-- lifted ban stays as a row with until_ms = 0 (pruned later) so other instances see it.
ALTER TABLE bans ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE bans ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX bans_by_version ON bans (version);
