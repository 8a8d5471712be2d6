-- Groups this peer hosts (host-relayed over /goop/mq/1.0.0).
CREATE TABLE _groups (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    app_type      TEXT NOT NULL DEFAULT '',
    -- Free JSON the host's app attaches (a quiz id, a board size, ...).
    context       TEXT NOT NULL DEFAULT 'null',
    -- 0: as many as the host's cap allows.
    max_members   INTEGER NOT NULL DEFAULT 0,
    -- 1: kept until closed; 0: ends when the host stops or its last member leaves.
    persistent    INTEGER NOT NULL DEFAULT 0,
    -- 1: only peers the host invited may join (the group is not listed to others).
    invite_only   INTEGER NOT NULL DEFAULT 0,
    -- JSON array of the roles the host defined; members get default_role.
    roles         TEXT NOT NULL DEFAULT '["member"]',
    default_role  TEXT NOT NULL DEFAULT 'member',
    -- The group's shared state (JSON), sent to members who join.
    state         TEXT NOT NULL DEFAULT 'null',
    -- Messages the host keeps and sends to those who join (a chat room's history); 0: none.
    history       INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL
);

-- Who belongs to a hosted group: members, peers invited, peers banned.
CREATE TABLE _group_members (
    group_id  TEXT NOT NULL REFERENCES _groups (id) ON DELETE CASCADE,
    peer_id   TEXT NOT NULL,
    role      TEXT NOT NULL,
    -- member | invited | banned
    status    TEXT NOT NULL,
    since_ms  INTEGER NOT NULL,
    PRIMARY KEY (group_id, peer_id)
);

-- Groups of other hosts this peer joined, so it rejoins them.
CREATE TABLE _group_subscriptions (
    host_peer_id  TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    group_name    TEXT NOT NULL DEFAULT '',
    app_type      TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL DEFAULT 'member',
    subscribed_ms INTEGER NOT NULL,
    PRIMARY KEY (host_peer_id, group_id)
);

-- Invitations received and not yet answered.
CREATE TABLE _group_invites (
    host_peer_id  TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    group_name    TEXT NOT NULL DEFAULT '',
    app_type      TEXT NOT NULL DEFAULT '',
    received_ms   INTEGER NOT NULL,
    PRIMARY KEY (host_peer_id, group_id)
);

-- Hosts whose invitations are accepted without asking.
CREATE TABLE _group_auto_join (
    host_peer_id  TEXT PRIMARY KEY NOT NULL,
    added_ms      INTEGER NOT NULL
);
