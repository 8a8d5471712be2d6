-- Direct chat: the messages exchanged with each peer, newest kept (a bound per peer and in all).
CREATE TABLE _chat_messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The other peer of the conversation.
    peer_id  TEXT NOT NULL,
    -- 1 when this peer sent it.
    outgoing INTEGER NOT NULL,
    text     TEXT NOT NULL,
    -- The message's id on the wire: a message heard twice is kept once.
    msg_id   TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    -- Whether the owner has seen it (received messages).
    read     INTEGER NOT NULL DEFAULT 0,
    -- received | sending | delivered | failed
    status   TEXT NOT NULL,
    -- Why it was not delivered.
    error    TEXT
);

CREATE INDEX _chat_messages_by_peer ON _chat_messages (peer_id, id);
CREATE UNIQUE INDEX _chat_messages_once ON _chat_messages (peer_id, outgoing, msg_id);

-- Peers the owner blocked: they cannot message this peer, join its groups or call its functions.
CREATE TABLE _blocked_peers (
    peer_id  TEXT PRIMARY KEY NOT NULL,
    added_ms INTEGER NOT NULL
);
