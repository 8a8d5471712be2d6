-- Administrators' sessions, shared by the instances of one database: a sign-in on one instance
-- is good on every other, a sign-out ends it everywhere, and a restart keeps it. The cookie's
-- token is kept only as its SHA-256 digest (hex), so reading the database does not sign anyone
-- in; `notice` is what the session's next page says, once.
CREATE TABLE admin_sessions (
    token_digest text PRIMARY KEY,
    csrf text NOT NULL,
    used_ms bigint NOT NULL,
    notice text
);
CREATE INDEX admin_sessions_used ON admin_sessions (used_ms);
