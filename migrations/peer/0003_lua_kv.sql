-- Each Lua script's own key-value store (goop.kv); values are JSON text.
CREATE TABLE _lua_kv (
    script TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (script, key)
);
