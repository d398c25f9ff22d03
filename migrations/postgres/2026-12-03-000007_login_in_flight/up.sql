-- Login attempts in flight (counted, password not yet checked). An attempt over the limit only
-- because others are still being checked waits for them instead of being refused: parallel
-- guesses still get at most the limit checked, and a person's parallel sign-ins all succeed.
ALTER TABLE login_throttle ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
