-- Care teams, their members and on-call schedule; the alert lifecycle (acknowledge,
-- assign, resolve with an outcome, escalate) and its append-only event log.

-- The people who work alerts. The sign-in issue adds credentials to this table; until then
-- a request names its user in X-RPM-User, and that is the username here.
CREATE TABLE staff (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username           text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    display_name       text NOT NULL CHECK (display_name <> ''),
    role               text NOT NULL
                       CHECK (role IN ('nurse', 'care_manager', 'physician', 'admin')),
    -- E.164; the number alerts are texted to, and the only one an SMS reply is taken from.
    phone              text UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    -- Quiet hours, on the member's own clock: no SMS but critical ones in between.
    time_zone          text NOT NULL DEFAULT 'UTC',
    quiet_hours_start  time,
    quiet_hours_end    time,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL))
);

CREATE TABLE care_team (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE care_team_member (
    care_team_id  bigint NOT NULL REFERENCES care_team (id),
    staff_id      bigint NOT NULL REFERENCES staff (id),
    PRIMARY KEY (care_team_id, staff_id)
);
CREATE INDEX care_team_member_staff_idx ON care_team_member (staff_id);

-- Who is on call, per escalation tier (1: the on-call nurse, 2: the backup, 3: the
-- physician), as periods that cannot overlap for one team and tier.
CREATE TABLE on_call_shift (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    care_team_id  bigint NOT NULL,
    staff_id      bigint NOT NULL,
    tier          smallint NOT NULL CHECK (tier BETWEEN 1 AND 3),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    during        tstzrange NOT NULL GENERATED ALWAYS AS (tstzrange(starts_at, ends_at, '[)')) STORED,
    CHECK (ends_at > starts_at),
    FOREIGN KEY (care_team_id, staff_id) REFERENCES care_team_member (care_team_id, staff_id),
    EXCLUDE USING gist (care_team_id WITH =, tier WITH =, during WITH &&)
);

ALTER TABLE patient ADD COLUMN care_team_id bigint REFERENCES care_team (id);
CREATE INDEX patient_care_team_idx ON patient (care_team_id);

ALTER TABLE alert
    ADD COLUMN assigned_to      bigint REFERENCES staff (id),
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_by  text,
    ADD COLUMN resolved_by      text,
    ADD COLUMN outcome          text CHECK (outcome IN (
                                    'patient_contacted', 'medication_adjusted',
                                    'referred_to_emergency_care',
                                    'measurement_or_device_error', 'no_action_needed')),
    ADD COLUMN resolution_note  text,
    -- The highest tier told so far (0: the worklist only), and when to go on if nobody
    -- has acknowledged by then (NULL: nothing due).
    ADD COLUMN escalation_tier  smallint NOT NULL DEFAULT 0,
    ADD COLUMN escalate_at      timestamptz,
    ADD CONSTRAINT alert_outcome_when_resolved CHECK (outcome IS NULL OR status = 'resolved');

-- The worklist: unresolved alerts, most severe first, then oldest, walked page by page.
CREATE INDEX alert_worklist_idx ON alert (severity_rank DESC, opened_at, id)
    WHERE status <> 'resolved';
CREATE INDEX alert_escalation_due_idx ON alert (escalate_at) WHERE status = 'open';

-- Every change of an alert, by whom and why. Append-only: the trigger refuses updates,
-- deletes and truncation, so that nothing in the application can rewrite the history.
CREATE TABLE alert_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alert (id),
    at           timestamptz NOT NULL DEFAULT now(),
    -- A username, or "system:<part>" for the service itself (rules, escalation, sms).
    actor        text NOT NULL CHECK (actor <> ''),
    action       text NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_event_alert_idx ON alert_event (alert_id, id);

CREATE FUNCTION alert_event_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER alert_event_no_update_or_delete BEFORE UPDATE OR DELETE ON alert_event
    FOR EACH ROW EXECUTE FUNCTION alert_event_is_append_only();
CREATE TRIGGER alert_event_no_truncate BEFORE TRUNCATE ON alert_event
    FOR EACH STATEMENT EXECUTE FUNCTION alert_event_is_append_only();

-- Alerts opened before this migration get their opening event, so every alert has one.
INSERT INTO alert_event (alert_id, at, actor, action, from_status, to_status)
SELECT id, opened_at, 'system:rules', 'opened', NULL, 'open' FROM alert;
