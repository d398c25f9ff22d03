-- The access token issued with each refresh token (its jti, and its expiry), so that revoking
-- a refresh family — at /oauth2/revoke, on refresh-token reuse, on a code's replay, when a
-- person or client is deleted — revokes the access tokens the family issued that are still
-- live (RFC 7009 §2.1, RFC 9700 §4.14).
ALTER TABLE refresh_tokens ADD COLUMN access_jti TEXT;
ALTER TABLE refresh_tokens ADD COLUMN access_exp BIGINT;
