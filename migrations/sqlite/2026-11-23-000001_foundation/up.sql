-- Column types are the ones diesel's MultiConnection shares between SQLite and PostgreSQL:
-- TEXT, INTEGER and BIGINT (unix seconds). Flags are INTEGER 0/1, binary values base64 TEXT.

CREATE TABLE instance (
    id INTEGER PRIMARY KEY NOT NULL,
    -- HMAC of a fixed label under the instance secret: tells a node started with the wrong
    -- LATCHKEY_SECRET before it writes anything it could not read back.
    secret_check TEXT NOT NULL
);

CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    allowed_ips TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    secret_hash TEXT,
    secret_enc TEXT,
    grant_types TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audiences TEXT NOT NULL,
    jwks TEXT,
    jwks_uri TEXT,
    access_token_alg TEXT NOT NULL,
    id_token_alg TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 0,
    is_native INTEGER NOT NULL DEFAULT 0,
    skip_consent INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX clients_org_created ON clients (org_id, created_at);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    alg TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retired_at BIGINT,
    publish_until BIGINT
);

CREATE TABLE used_assertions (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
