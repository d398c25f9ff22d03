-- Issue 6: running an organization over /v1.
--
-- Client secret rotation keeps the previous secret (its keyed hash, or for client_secret_jwt
-- its encryption) working until prev_secret_expires_at. Clients and people get a creation
-- sequence (microseconds) for lists in creation order, like API keys.
ALTER TABLE clients ADD COLUMN prev_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN prev_secret_enc TEXT;
ALTER TABLE clients ADD COLUMN prev_secret_expires_at BIGINT;
ALTER TABLE clients ADD COLUMN created_seq BIGINT NOT NULL DEFAULT 0;
-- Every change of a client row bumps its version; a change made from a stale read (a PATCH
-- racing a secret rotation) matches no row and is refused instead of undoing the other.
ALTER TABLE clients ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN created_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX clients_org_seq ON clients (org_id, created_seq, client_id);
CREATE INDEX users_org_seq ON users (org_id, created_seq, id);

-- The audit log (SPEC §4). dedup_key is set only for refused credentials: one record per
-- credential, reason and minute, whichever node saw it first.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    org_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    ip TEXT,
    request_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    dedup_key TEXT UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_events_org_seq ON audit_events (org_id, seq, id);
CREATE INDEX audit_events_created ON audit_events (created_at);

-- Idempotency-Key of /v1 POSTs (SPEC §4). key_hash is a keyed hash of the organization, the
-- credential and the key; request_hash of the method, path and body. status is NULL while the
-- first request runs; response holds the first response, encrypted under a key derived from
-- the instance secret and the Idempotency-Key (so the row alone reveals nothing).
CREATE TABLE idempotency_keys (
    key_hash TEXT PRIMARY KEY NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
