-- Confirmation before alerting: a single out-of-range, non-critical reading of a rule
-- that asks for it is held here while the patient is asked by SMS to re-measure. The
-- next reading, or the scheduled check once `due_at` passes, settles it. Settled rows
-- stay: they count the alerts a repeat reading spared.
CREATE TABLE alert_confirmation (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      bigint NOT NULL REFERENCES patient (id),
    rule_id         text NOT NULL,
    plan_version    integer NOT NULL,
    -- A critical finding never waits.
    severity        text NOT NULL CHECK (severity IN ('warning', 'high')),
    -- The reading held back (its natural key) and its finding's sentence.
    device_id       bigint NOT NULL,
    kind            text NOT NULL,
    measured_at     timestamptz NOT NULL,
    episode_since   timestamptz NOT NULL,
    message         text NOT NULL,
    -- The rule's window, kept so that the check need not parse the plan.
    within_minutes  smallint NOT NULL CHECK (within_minutes > 0),
    requested_at    timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    notification_id bigint REFERENCES notification (id),
    outcome         text CHECK (outcome IN ('confirmed', 'not_confirmed', 'no_repeat')),
    settled_at      timestamptz,
    alert_id        bigint REFERENCES alert (id),
    CHECK ((outcome IS NULL) = (settled_at IS NULL))
);
-- One held finding per patient and rule: two evaluations at once cannot hold two.
CREATE UNIQUE INDEX alert_confirmation_one_waiting_idx ON alert_confirmation (patient_id, rule_id)
    WHERE settled_at IS NULL;
CREATE INDEX alert_confirmation_due_idx ON alert_confirmation (due_at) WHERE settled_at IS NULL;

-- The request to re-measure goes through the outbox to the patient, like a reminder: the
-- same consent and number, rate limit, retries and delivery tracking.
ALTER TABLE notification
    DROP CONSTRAINT notification_purpose_check,
    ADD CONSTRAINT notification_purpose_check CHECK (purpose IN
        ('opened', 'severity_raised', 'escalated', 'reminded', 'adherence_reminder',
         'confirmation_request')),
    DROP CONSTRAINT notification_recipient,
    ADD CONSTRAINT notification_recipient CHECK (CASE
        WHEN purpose IN ('adherence_reminder', 'confirmation_request')
            THEN patient_id IS NOT NULL AND alert_id IS NULL AND staff_id IS NULL
                 AND tier IS NULL AND severity = 'warning'
        ELSE alert_id IS NOT NULL AND staff_id IS NOT NULL AND patient_id IS NULL
             AND tier IS NOT NULL
    END);
