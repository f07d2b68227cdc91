-- Readings pushed into a clinic's EHR: the FHIR servers to push to, and an outbox with a
-- row per reading per server, written in the ingest transaction that stores the reading
-- (rpm/ehr/repository.py). A row is `pending` until the server has taken its
-- Observations (`sent`), or until it was refused for good or retried too often (`dead`,
-- with the reason, for an admin to see and retry). No foreign key to `reading`: on
-- TimescaleDB it is a hypertable, which foreign keys cannot reference.
CREATE TABLE ehr_endpoint (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                        text NOT NULL UNIQUE,
    -- The FHIR base URL, e.g. https://ehr.example/fhir/R4 (no trailing slash).
    base_url                    text NOT NULL,
    -- The identifier system under which the EHR knows the clinic's patient reference
    -- (patient.external_ref, usually the MRN): subjects are conditional references on it.
    patient_identifier_system   text NOT NULL,
    -- A bearer token the EHR issued to rpm; NULL sends none.
    bearer_token                text,
    active                      boolean NOT NULL DEFAULT true,
    created_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ehr_push (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     bigint NOT NULL REFERENCES ehr_endpoint (id),
    -- The reading's key.
    device_id       bigint NOT NULL,
    kind            text NOT NULL,
    measured_at     timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    -- When it is next due; while a pusher holds it, the end of its lease (a pusher that
    -- dies leaves it due again then: at least once, and the EHR's conditional create
    -- keeps a second delivery from doubling anything).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (endpoint_id, device_id, kind, measured_at)
);
CREATE INDEX ehr_push_due_idx ON ehr_push (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ehr_push_dead_idx ON ehr_push (endpoint_id, id) WHERE status = 'dead';
