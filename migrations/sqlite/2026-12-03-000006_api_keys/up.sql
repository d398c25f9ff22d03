-- API keys (SPEC §4). A key is stored only as a keyed hash (HMAC-SHA-256 under the instance
-- secret); key_prefix is the part shown in lists (type, environment, 4 characters). A revoked
-- key keeps its row (so that ids stay unique and history stays readable) but never
-- authenticates again. Rotation points the old key at its successor and shortens its expiry
-- to the end of the grace period.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    environment TEXT NOT NULL,
    scopes TEXT NOT NULL,
    allowed_ips TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    rate_limit_per_minute INTEGER,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    -- Creation order for lists (microseconds; created_at is whole seconds).
    created_seq BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    rotated_to TEXT
);
CREATE INDEX api_keys_org_created ON api_keys (org_id, created_seq, id);
