DROP TABLE idempotency_keys;
DROP TABLE audit_events;
DROP INDEX users_org_seq;
DROP INDEX clients_org_seq;
ALTER TABLE users DROP COLUMN created_seq;
ALTER TABLE clients DROP COLUMN created_seq;
ALTER TABLE clients DROP COLUMN prev_secret_expires_at;
ALTER TABLE clients DROP COLUMN prev_secret_enc;
ALTER TABLE clients DROP COLUMN prev_secret_hash;
