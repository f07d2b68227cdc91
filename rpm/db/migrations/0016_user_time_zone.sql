-- The clock a user reads the web UI on: an IANA zone name they choose (/ui/settings).
-- NULL: their staff record's zone, else the service's RPM_TIME_ZONE (docs/web-ui.md).
-- The name is checked by the application (zoneinfo), not here: PostgreSQL's zone list
-- and Python's may differ by a release.
ALTER TABLE app_user ADD COLUMN time_zone text CHECK (time_zone <> '');
