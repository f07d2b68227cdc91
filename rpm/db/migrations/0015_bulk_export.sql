-- FHIR Bulk Data export and the SMART Backend Services clients that run it
-- (rpm/auth/clients.py, rpm/fhir/exports.py; docs/fhir.md).

-- An EHR's backend registered by an admin: it signs in with a JWT signed by a key of its
-- JWK Set (public keys only), and may be granted at most `scopes`.
CREATE TABLE smart_client (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   text NOT NULL UNIQUE,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    jwks        jsonb NOT NULL,
    scopes      text[] NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);

-- Each assertion's `jti`, until the assertion expires: one used again is a replay.
CREATE TABLE smart_assertion (
    client_id   bigint NOT NULL REFERENCES smart_client (id),
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX smart_assertion_expires_idx ON smart_assertion (expires_at);

-- An access token issued to a client: only its SHA-256 is kept (256 random bits).
CREATE TABLE smart_token (
    token_hash  bytea PRIMARY KEY,
    client_id   bigint NOT NULL REFERENCES smart_client (id),
    scopes      text[] NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX smart_token_expires_idx ON smart_token (expires_at);

-- A `$export` request: `pending` until an exporter has written every type's files,
-- then `complete` (or `failed`, with the reason) until `expires_at`. An exporter claims
-- a pending job (SKIP LOCKED) with a lease and a claim token of its own; one that dies
-- leaves the lease to run out, and the next takes the job up where `progress` (per type:
-- its cursor, or done) says, since each file and the progress past it commit together.
-- A cancel (DELETE of the status URL) deletes the job and its files.
CREATE TABLE bulk_export (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Who may poll and download: "client:<client_id>" or "user:<app_user.id>".
    owner             text NOT NULL,
    request           text NOT NULL,
    -- The care team of a Group export; NULL: Patient/$export.
    group_id          bigint,
    -- The patients in scope at kick-off.
    patient_ids       bigint[] NOT NULL,
    types             text[] NOT NULL,
    since             timestamptz,
    -- Resources changed up to this instant are exported: the `_since` of the next pull.
    transaction_time  timestamptz NOT NULL DEFAULT now(),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'complete', 'failed')),
    progress          jsonb NOT NULL DEFAULT '{}',
    claim             uuid,
    lease_until       timestamptz,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    expires_at        timestamptz
);
CREATE INDEX bulk_export_pending_idx ON bulk_export (created_at) WHERE status = 'pending';
CREATE INDEX bulk_export_expires_idx ON bulk_export (expires_at);

-- One NDJSON file of an export: up to RPM_BULK_FILE_RESOURCES resources of one type, and
-- the patients whose data it holds (each download is audited for them).
CREATE TABLE bulk_export_file (
    export_id    uuid NOT NULL REFERENCES bulk_export (id) ON DELETE CASCADE,
    type         text NOT NULL,
    seq          integer NOT NULL,
    count        integer NOT NULL,
    patient_ids  bigint[] NOT NULL,
    body         text NOT NULL,
    PRIMARY KEY (export_id, type, seq)
);
