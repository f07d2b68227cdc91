-- Care plans (versioned), the alerts their rules raise, and the queue that makes rule
-- evaluation as durable as the readings it evaluates.

-- Every change to a patient's plan is a new version, kept with who made it and why; the
-- document is the plan as the care manager wrote it (limits in their own units).
CREATE TABLE care_plan_version (
    patient_id  bigint NOT NULL REFERENCES patient (id),
    version     integer NOT NULL CHECK (version > 0),
    document    jsonb NOT NULL,
    -- The guideline templates it was made from, at enrolment.
    templates   text[] NOT NULL DEFAULT '{}',
    author      text NOT NULL CHECK (author <> ''),
    reason      text NOT NULL CHECK (reason <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, version)
);

-- The version in force. Replacing a plan moves this pointer with a compare-and-set on the
-- version the editor started from, so two editors cannot silently overwrite each other.
CREATE TABLE care_plan (
    patient_id  bigint PRIMARY KEY REFERENCES patient (id),
    version     integer NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (patient_id, version) REFERENCES care_plan_version (patient_id, version)
        DEFERRABLE INITIALLY DEFERRED
);

-- The current plan's missed-reading rules, kept apart from the document so that the
-- scheduled check over every patient is one indexed query, not 100,000 JSON parses.
CREATE TABLE missed_reading_rule (
    patient_id  bigint NOT NULL REFERENCES patient (id),
    rule_id     text NOT NULL,
    expects     text[] NOT NULL,
    days        integer NOT NULL CHECK (days > 0),
    PRIMARY KEY (patient_id, rule_id)
);

-- Severities in order, for sorting and for "raised if worse".
CREATE FUNCTION severity_rank(severity text) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE severity WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'warning' THEN 1 END;

CREATE TABLE alert (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id          bigint NOT NULL REFERENCES patient (id),
    rule_id             text NOT NULL,
    -- The plan version whose rule opened the alert.
    plan_version        integer NOT NULL,
    severity            text NOT NULL CHECK (severity IN ('warning', 'high', 'critical')),
    severity_rank       smallint NOT NULL GENERATED ALWAYS AS (severity_rank(severity)) STORED,
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'acknowledged', 'resolved')),
    -- The sentence of the most severe finding, and of the latest one.
    message             text NOT NULL,
    latest_message      text NOT NULL,
    -- Readings that fired the rule while the alert was open (1 for a missed-reading alert).
    occurrences         integer NOT NULL DEFAULT 0,
    first_triggered_at  timestamptz NOT NULL,
    last_triggered_at   timestamptz NOT NULL,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Set by the transaction that made a recurrence raise the severity: the alerts issue
    -- notifies on it as on an opening.
    severity_raised_at  timestamptz,
    resolved_at         timestamptz,
    FOREIGN KEY (patient_id, plan_version) REFERENCES care_plan_version (patient_id, version),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- At most one alert open (or acknowledged) per patient and rule, whatever the number of
-- workers evaluating at once: a recurrence updates it (INSERT ... ON CONFLICT).
CREATE UNIQUE INDEX alert_one_open_idx ON alert (patient_id, rule_id) WHERE status <> 'resolved';
CREATE INDEX alert_patient_rule_idx ON alert (patient_id, rule_id, id DESC);

-- The readings that fired an alert's rule. Keyed, so evaluating a reading twice (a retried
-- evaluation) counts it once. No foreign key to `reading`: TimescaleDB does not allow
-- foreign keys that point into a hypertable.
CREATE TABLE alert_trigger (
    alert_id     bigint NOT NULL REFERENCES alert (id),
    device_id    bigint NOT NULL,
    kind         text NOT NULL,
    measured_at  timestamptz NOT NULL,
    PRIMARY KEY (alert_id, device_id, kind, measured_at)
);

-- Written in the ingest transaction that stores the readings, deleted in the transaction
-- that writes their alerts: a crash in between leaves the row, and the sweeper evaluates
-- it. Readings are never left unevaluated, and never evaluated into two alerts.
CREATE TABLE rule_evaluation_queue (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    patient_ids   bigint[] NOT NULL,
    device_ids    bigint[] NOT NULL,
    kinds         text[] NOT NULL,
    measured_ats  timestamptz[] NOT NULL
);
