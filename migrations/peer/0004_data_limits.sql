-- What other peers may store in a user table. The owner sets these per table in the database
-- editor; NULL takes the peer's default from goop.json (`data.max_rows_per_caller`, …).
ALTER TABLE _tables ADD COLUMN max_rows_per_caller INTEGER;
ALTER TABLE _tables ADD COLUMN max_bytes_per_caller INTEGER;
ALTER TABLE _tables ADD COLUMN max_rows INTEGER;
ALTER TABLE _tables ADD COLUMN max_bytes INTEGER;

-- What each `_owner` keeps in each user table: rows, and bytes of the values of the table's own
-- columns. Triggers on every user table (`_usage_insert_<t>`, `_usage_update_<t>`,
-- `_usage_delete_<t>`) keep it current whoever writes (the data API, scripts, the console);
-- tables older than this migration get theirs, and their counts, when the peer opens data.db.
CREATE TABLE _usage (
    tbl        TEXT NOT NULL,
    owner      TEXT NOT NULL,
    row_count  INTEGER NOT NULL,
    byte_count INTEGER NOT NULL,
    PRIMARY KEY (tbl, owner)
) WITHOUT ROWID;
