DROP TABLE refresh_tokens;
DROP TABLE refresh_families;
DROP TABLE authorization_codes;
