-- Browser sessions, stored (not a self-contained cookie) so that logout and deleting a person
-- end them on every node at once. The cookie holds a random id; only its keyed hash is here.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Failed logins per account and per client address (SPEC §3), shared by every node. Keys are
-- "user:" + a keyed hash of the username (a username that matched no one is never stored in
-- clear) and "ip:" + the address.
CREATE TABLE login_throttle (
    throttle_key TEXT PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    window_start BIGINT NOT NULL,
    blocked_until BIGINT
);
