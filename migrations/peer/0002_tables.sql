-- The registry of user tables: their schema (JSON) and who may do what.
-- Policies: local | owner | group | open.
CREATE TABLE _tables (
    name          TEXT PRIMARY KEY NOT NULL,
    schema        TEXT NOT NULL,
    read_policy   TEXT NOT NULL DEFAULT 'open',
    insert_policy TEXT NOT NULL DEFAULT 'owner',
    update_policy TEXT NOT NULL DEFAULT 'owner',
    delete_policy TEXT NOT NULL DEFAULT 'owner',
    created_ms    INTEGER NOT NULL
);
