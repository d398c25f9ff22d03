DROP TABLE revoked_tokens;
DROP TABLE used_assertions;
DROP TABLE signing_keys;
DROP TABLE clients;
DROP TABLE organizations;
DROP TABLE instance;
