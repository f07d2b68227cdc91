-- Foundation: patients, devices and who had which device when, readings, and the
-- dead letter for every message that did not become a reading.
--
-- Plain PostgreSQL. When TimescaleDB is present, rpm/db/timescale.py turns `reading`
-- into a hypertable after the migrations; the logical schema is the same either way.

-- The device-assignment exclusion constraint needs `=` on bigint inside a GiST index.
-- btree_gist is a trusted contrib extension (PostgreSQL 13+): a database owner may create it.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE patient (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The identifier the clinic knows the patient by (e.g. an MRN); unique per deployment.
    external_ref  text NOT NULL UNIQUE CHECK (external_ref <> ''),
    given_name    text NOT NULL,
    family_name   text NOT NULL,
    birth_date    date,
    -- IANA name (validated by the application): day boundaries for adherence and billing.
    time_zone     text NOT NULL DEFAULT 'UTC',
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'paused', 'discharged')),
    enrolled_at   timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The registered serial is the device's identity on the wire (MQTT topic, webhook).
    serial         text NOT NULL UNIQUE CHECK (serial ~ '^[A-Za-z0-9._:-]{1,64}$'),
    kind           text NOT NULL
                   CHECK (kind IN ('blood_pressure_cuff', 'weight_scale', 'glucometer')),
    model          text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    registered_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz
);

-- A device can move from patient to patient; a reading belongs to the patient who had
-- the device when it was measured, so assignments are kept as non-overlapping periods.
CREATE TABLE device_assignment (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id      bigint NOT NULL REFERENCES device (id),
    patient_id     bigint NOT NULL REFERENCES patient (id),
    assigned_at    timestamptz NOT NULL,
    unassigned_at  timestamptz,
    during         tstzrange NOT NULL
                   GENERATED ALWAYS AS (tstzrange(assigned_at, unassigned_at, '[)')) STORED,
    CHECK (unassigned_at IS NULL OR unassigned_at > assigned_at),
    EXCLUDE USING gist (device_id WITH =, during WITH &&)
);
CREATE INDEX device_assignment_patient_idx ON device_assignment (patient_id, assigned_at);

-- One row per measurement event: a blood-pressure reading carries systolic, diastolic and
-- pulse together. Values are stored in canonical units (named in the column); `original`
-- keeps what the device sent, values and units, for audit and display.
CREATE TABLE reading (
    device_id          bigint NOT NULL REFERENCES device (id),
    kind               text NOT NULL
                       CHECK (kind IN ('blood_pressure', 'body_weight', 'blood_glucose', 'heart_rate')),
    measured_at        timestamptz NOT NULL,
    patient_id         bigint NOT NULL REFERENCES patient (id),
    received_at        timestamptz NOT NULL DEFAULT now(),
    -- The device's own UTC offset in minutes when it measured: "07:30 at the patient's home".
    measured_utc_offset_min smallint,
    systolic_mmhg      real,
    diastolic_mmhg     real,
    pulse_bpm          real,
    weight_kg          double precision,
    glucose_mg_dl      real,
    meal_context       text CHECK (meal_context IN
                           ('fasting', 'before_meal', 'after_meal', 'bedtime', 'random')),
    -- NULL for a single measurement; an Open mHealth descriptive statistic (average,
    -- maximum, ...) for summaries, which rules leave out.
    statistic          text,
    original           jsonb NOT NULL,
    source             text NOT NULL CHECK (source IN ('native', 'omh', 'tenovi')),
    device_reading_id  text,
    -- The natural key: redelivered and re-sent readings collide here and are dropped.
    PRIMARY KEY (device_id, kind, measured_at),
    CHECK (CASE kind
        WHEN 'blood_pressure' THEN systolic_mmhg IS NOT NULL AND diastolic_mmhg IS NOT NULL
        WHEN 'body_weight'    THEN weight_kg IS NOT NULL
        WHEN 'blood_glucose'  THEN glucose_mg_dl IS NOT NULL
        WHEN 'heart_rate'     THEN pulse_bpm IS NOT NULL
    END)
);
-- "This patient, this kind, this time range": the query every rule and chart makes.
CREATE INDEX reading_patient_kind_time_idx ON reading (patient_id, kind, measured_at DESC);

-- Every message that did not become a reading, kept with its raw bytes and the reason,
-- so that nothing a device sent is lost and it can be replayed once the cause is fixed.
CREATE TABLE rejected_message (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL CHECK (source IN ('mqtt', 'http')),
    topic          text NOT NULL,
    device_serial  text,
    payload        bytea NOT NULL,
    reason         text NOT NULL,
    detail         text NOT NULL
);
CREATE INDEX rejected_message_received_idx ON rejected_message (received_at DESC);
CREATE INDEX rejected_message_reason_idx ON rejected_message (reason, received_at DESC);
