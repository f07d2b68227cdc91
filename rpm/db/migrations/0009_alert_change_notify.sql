-- Worklist pages update live: a change to what the worklist shows NOTIFYs `alert_changed`,
-- whichever process made it (the rule engine, a nurse, escalation, the SMS dispatcher).
-- Each rpm process LISTENs on one connection and tells the pages open on it
-- (rpm/alerts/changes.py), which read the worklist again.
--
-- The payload is the care teams concerned, comma-separated (patients without a team are
-- left out; admins' pages look again at any change), or '*' for more teams than are worth
-- listing: a page of another team need not look again. Team ids only, no patient data.
-- Triggers per statement, not per row: a batch of readings raising or updating a hundred
-- alerts is one notification, and PostgreSQL folds identical notifications of one
-- transaction into one.

CREATE FUNCTION alert_changed_teams(patient_ids bigint[]) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(DISTINCT p.care_team_id) > 200 THEN '*'
                ELSE coalesce(string_agg(DISTINCT p.care_team_id::text, ','), '') END
    FROM patient p
    WHERE p.id = ANY(patient_ids) AND p.care_team_id IS NOT NULL
$$;

CREATE FUNCTION notify_alert_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    patient_ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT patient_id) INTO patient_ids FROM changed_alert;
    IF patient_ids IS NOT NULL THEN
        PERFORM pg_notify('alert_changed', alert_changed_teams(patient_ids));
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with transition tables takes one event only: one for inserts, one for updates
-- (INSERT ... ON CONFLICT DO UPDATE fires both, each with its own rows).
CREATE TRIGGER alert_inserted_notify AFTER INSERT ON alert
    REFERENCING NEW TABLE AS changed_alert
    FOR EACH STATEMENT EXECUTE FUNCTION notify_alert_changed();
CREATE TRIGGER alert_updated_notify AFTER UPDATE ON alert
    REFERENCING NEW TABLE AS changed_alert
    FOR EACH STATEMENT EXECUTE FUNCTION notify_alert_changed();

-- The worklist flags an alert whose SMS failed.
CREATE FUNCTION notify_alert_sms_failed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alert_changed', alert_changed_teams(
        ARRAY(SELECT patient_id FROM alert WHERE id = NEW.alert_id)));
    RETURN NULL;
END
$$;
CREATE TRIGGER notification_failed_notify AFTER UPDATE OF status ON notification
    FOR EACH ROW
    WHEN (NEW.status IN ('failed', 'undelivered') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_alert_sms_failed();

-- A patient moved to another team takes their open alerts from one worklist to another.
CREATE FUNCTION notify_patient_team_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM alert WHERE patient_id = NEW.id AND status <> 'resolved') THEN
        PERFORM pg_notify('alert_changed', concat_ws(',', OLD.care_team_id, NEW.care_team_id));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER patient_team_changed_notify AFTER UPDATE OF care_team_id ON patient
    FOR EACH ROW WHEN (OLD.care_team_id IS DISTINCT FROM NEW.care_team_id)
    EXECUTE FUNCTION notify_patient_team_changed();
