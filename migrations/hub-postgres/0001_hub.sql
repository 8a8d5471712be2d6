-- Hub state shared by the instances that use the same presence.peer_db_url: peers, bans and
-- the template store. The same shape as the SQLite file's (migrations/hub-sqlite), in
-- PostgreSQL's types.

-- One row: the name of this database in event ids, the version counters and how far
-- tombstones were pruned. A writer takes its versions with an UPDATE of this row, which holds
-- the row lock until commit: versions are therefore committed in order, and an instance that
-- has read every row up to version V will never see a row below V appear later.
CREATE TABLE hub_meta (
    id             integer PRIMARY KEY CHECK (id = 1),
    cluster        text NOT NULL,
    peer_version   bigint NOT NULL,
    ban_version    bigint NOT NULL,
    -- Resuming a stream from a version at or below this one needs a snapshot.
    pruned_version bigint NOT NULL
);

INSERT INTO hub_meta (id, cluster, peer_version, ban_version, pruned_version)
VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 12), 0, 0, 0);

CREATE TABLE peers (
    peer_id       text PRIMARY KEY,
    -- The last accepted presence message, as the hub forwards it (JSON).
    presence      text NOT NULL,
    signed        boolean NOT NULL,
    verified      boolean NOT NULL,
    first_seen_ms bigint NOT NULL,
    last_seen_ms  bigint NOT NULL,
    -- False once the peer went offline (kept for a while so other instances see the departure).
    online        boolean NOT NULL,
    expires_ms    bigint NOT NULL,
    -- The instance that wrote the row last.
    instance      text NOT NULL,
    version       bigint NOT NULL
);

CREATE INDEX peers_by_version ON peers (version);

-- A lifted ban stays as a row with until_ms = 0 (pruned later) so other instances see it.
CREATE TABLE bans (
    peer_id  text PRIMARY KEY,
    until_ms bigint NOT NULL,
    instance text NOT NULL,
    version  bigint NOT NULL
);

CREATE INDEX bans_by_version ON bans (version);

-- Templates as checked, normalised tar.gz bundles (the operator's uploads), so that every
-- instance serves the same ones without a shared directory.
CREATE TABLE templates (
    name       text PRIMARY KEY,
    -- manifest.json as stored in the bundle.
    manifest   text NOT NULL,
    bundle     bytea NOT NULL,
    -- Quoted strong ETag of `bundle`.
    etag       text NOT NULL,
    updated_ms bigint NOT NULL
);
