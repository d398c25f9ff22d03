-- People who log in through the pages. Usernames are unique across the whole server,
-- compared case-insensitively through username_key (the lower-cased username).
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    email TEXT,
    email_verified INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    -- Argon2id, PHC string format.
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_org_created ON users (org_id, created_at);
