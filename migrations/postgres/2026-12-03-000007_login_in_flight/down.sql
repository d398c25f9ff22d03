ALTER TABLE login_throttle DROP COLUMN in_flight;
