-- Hub peer state shared by the instances that use the same presence.peer_db_path.
-- Every write takes the next `version`; instances poll for versions above the last one they saw.

CREATE TABLE peers (
    peer_id       TEXT PRIMARY KEY NOT NULL,
    -- The last accepted presence message, as the hub forwards it (JSON).
    presence      TEXT NOT NULL,
    signed        INTEGER NOT NULL,
    verified      INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    -- 0 once the peer went offline (kept for a while so other instances see the departure).
    online        INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    -- The instance that wrote the row last.
    instance      TEXT NOT NULL,
    version       INTEGER NOT NULL
);

CREATE INDEX peers_by_version ON peers (version);

CREATE TABLE bans (
    peer_id  TEXT PRIMARY KEY NOT NULL,
    until_ms INTEGER NOT NULL
);
