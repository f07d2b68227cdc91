-- Program operations: episodes of care (billing periods count from their start), staff
-- time logs, and opt-in adherence reminders to patients through the SMS outbox.
-- The daily reading counts need no table: rpm/program/repository.py reads `reading`, or
-- the TimescaleDB continuous aggregate that rpm/db/timescale.py keeps beside it.

-- An episode of care runs from enrolment (or re-activation after a discharge) to the
-- discharge. Billing's 30-day periods start at an episode's start, and its set-up code
-- is billed once per episode. A trigger keeps the episodes in step with the patient's
-- status, whatever changes it.
CREATE TABLE care_episode (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patient (id),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
-- One open episode per patient at most.
CREATE UNIQUE INDEX care_episode_open_idx ON care_episode (patient_id) WHERE ended_at IS NULL;
CREATE INDEX care_episode_patient_idx ON care_episode (patient_id, started_at);

INSERT INTO care_episode (patient_id, started_at, ended_at)
SELECT id, enrolled_at, CASE WHEN status = 'discharged' THEN now() END FROM patient;

CREATE FUNCTION care_episode_follows_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO care_episode (patient_id, started_at, ended_at)
        VALUES (NEW.id, NEW.enrolled_at, CASE WHEN NEW.status = 'discharged' THEN now() END);
    ELSIF NEW.status = 'discharged' AND OLD.status <> 'discharged' THEN
        UPDATE care_episode SET ended_at = greatest(now(), started_at)
        WHERE patient_id = NEW.id AND ended_at IS NULL;
    ELSIF OLD.status = 'discharged' AND NEW.status <> 'discharged' THEN
        INSERT INTO care_episode (patient_id, started_at) VALUES (NEW.id, now());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER care_episode_on_enrolment AFTER INSERT ON patient
    FOR EACH ROW EXECUTE FUNCTION care_episode_follows_status();
CREATE TRIGGER care_episode_on_status AFTER UPDATE OF status ON patient
    FOR EACH ROW EXECUTE FUNCTION care_episode_follows_status();

-- Management time a care-team member spent on a patient: a stopwatch (ended_at NULL
-- while it runs) or minutes entered afterwards (ended_at = started_at + minutes). One
-- person's entries cannot overlap, so no minute is counted twice. Entries are never
-- deleted; a mistaken one is voided with a reason.
CREATE TABLE time_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      bigint NOT NULL REFERENCES patient (id),
    staff_id        bigint NOT NULL REFERENCES staff (id),
    -- The staff member's role when the time was spent: a physician's time also counts
    -- towards 99091.
    staff_role      text NOT NULL CHECK (staff_role IN ('nurse', 'care_manager', 'physician', 'admin')),
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    -- Whether it included a real-time interactive communication with the patient or
    -- caregiver (by phone or video), which the time codes need once in the month.
    interactive     boolean NOT NULL DEFAULT false,
    note            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL,
    voided_at       timestamptz,
    voided_by       text,
    void_reason     text,
    during          tstzrange NOT NULL
                    GENERATED ALWAYS AS (tstzrange(started_at, ended_at, '[)')) STORED,
    CHECK (ended_at IS NULL OR ended_at > started_at),
    CHECK ((voided_at IS NULL) = (voided_by IS NULL) AND (voided_at IS NULL) = (void_reason IS NULL)),
    CONSTRAINT time_log_no_overlap
        EXCLUDE USING gist (staff_id WITH =, during WITH &&) WHERE (voided_at IS NULL)
);
CREATE INDEX time_log_patient_idx ON time_log (patient_id, started_at);
CREATE INDEX time_log_started_idx ON time_log (started_at);

-- Adherence reminders: the patient's own consent, number and quiet hours. The number is
-- the only patient contact the service holds, and it is never logged.
ALTER TABLE patient
    ADD COLUMN reminder_phone        text CHECK (reminder_phone ~ '^\+[1-9][0-9]{6,14}$'),
    ADD COLUMN reminders_opted_in_at timestamptz,
    -- NULL: the service's RPM_ADHERENCE_REMINDER_AFTER_DAYS.
    ADD COLUMN reminder_after_days   smallint CHECK (reminder_after_days BETWEEN 1 AND 30),
    ADD COLUMN quiet_hours_start     time,
    ADD COLUMN quiet_hours_end       time,
    ADD CONSTRAINT patient_reminders_need_a_phone
        CHECK (reminders_opted_in_at IS NULL OR reminder_phone IS NOT NULL),
    ADD CONSTRAINT patient_quiet_hours_pair
        CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL));

-- The outbox also carries reminders to patients: such a row names the patient, not an
-- alert and a staff member. Rate limits and quiet hours apply to them as to staff; a
-- reminder is never critical (severity 'warning'), so quiet hours always hold it back.
ALTER TABLE notification
    ALTER COLUMN alert_id DROP NOT NULL,
    ALTER COLUMN staff_id DROP NOT NULL,
    ALTER COLUMN tier DROP NOT NULL,
    ADD COLUMN patient_id bigint REFERENCES patient (id),
    DROP CONSTRAINT notification_purpose_check,
    ADD CONSTRAINT notification_purpose_check CHECK (purpose IN
        ('opened', 'severity_raised', 'escalated', 'reminded', 'adherence_reminder')),
    ADD CONSTRAINT notification_recipient CHECK (CASE purpose
        WHEN 'adherence_reminder'
            THEN patient_id IS NOT NULL AND alert_id IS NULL AND staff_id IS NULL
                 AND tier IS NULL AND severity = 'warning'
        ELSE alert_id IS NOT NULL AND staff_id IS NOT NULL AND patient_id IS NULL
             AND tier IS NOT NULL
    END);
CREATE INDEX notification_patient_idx ON notification (patient_id, created_at)
    WHERE patient_id IS NOT NULL;
-- At most one reminder waiting per patient: two processes' scans cannot both add one.
CREATE UNIQUE INDEX notification_one_waiting_reminder_idx ON notification (patient_id)
    WHERE purpose = 'adherence_reminder' AND status IN ('pending', 'sending');
CREATE INDEX notification_recent_patient_idx ON notification (patient_id, sent_at)
    WHERE sent_at IS NOT NULL AND patient_id IS NOT NULL;
