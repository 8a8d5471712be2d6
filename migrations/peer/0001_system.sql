-- The peer's own database (<dir>/data.db): system tables start with `_`.

-- Facts about this database (schema owner, creation time, ...).
CREATE TABLE _meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- The peers this peer heard of last, so a restart starts with them.
CREATE TABLE _peer_cache (
    peer_id      TEXT PRIMARY KEY NOT NULL,
    label        TEXT NOT NULL,
    email        TEXT NOT NULL,
    avatar_hash  TEXT,
    -- Announced multiaddrs, as a JSON array of strings.
    addrs        TEXT NOT NULL,
    verified     INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);

CREATE INDEX _peer_cache_by_last_seen ON _peer_cache (last_seen_ms);

-- The owner's favourite peers: kept in the list even while they are away.
CREATE TABLE _favorites (
    peer_id  TEXT PRIMARY KEY NOT NULL,
    added_ms INTEGER NOT NULL
);
