ALTER TABLE refresh_tokens DROP COLUMN access_exp;
ALTER TABLE refresh_tokens DROP COLUMN access_jti;
