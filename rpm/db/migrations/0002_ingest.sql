-- Ingest: what devices say of themselves, dead-letter replays, and webhook integrations.

ALTER TABLE device
    ADD COLUMN battery_percent     smallint CHECK (battery_percent BETWEEN 0 AND 100),
    ADD COLUMN signal_dbm          smallint,
    ADD COLUMN firmware            text,
    ADD COLUMN status_reported_at  timestamptz;

-- A replay feeds the stored raw bytes through the pipeline again (after the device was
-- registered or assigned, say); the row stays, marked with when and what came of it.
ALTER TABLE rejected_message
    ADD COLUMN replayed_at    timestamptz,
    ADD COLUMN replay_result  text;
CREATE INDEX rejected_message_pending_idx ON rejected_message (received_at DESC)
    WHERE replayed_at IS NULL;
-- A message redelivered after a crash between commit and acknowledgement must not be
-- dead-lettered twice: identical bytes on the same topic are kept once until replayed.
ALTER TABLE rejected_message
    ADD COLUMN payload_sha256 bytea GENERATED ALWAYS AS (sha256(payload)) STORED;
CREATE UNIQUE INDEX rejected_message_once_idx ON rejected_message (topic, payload_sha256)
    WHERE replayed_at IS NULL;

-- Vendors that push readings over HTTPS (cellular gateways). Each integration has its own
-- secret, sent in a header; only its SHA-256 is kept (it is a random 256-bit token, so a
-- slow password hash adds nothing), and the secret is shown once when created.
CREATE TABLE integration (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    vendor         text NOT NULL CHECK (vendor IN ('tenovi')),
    secret_sha256  bytea NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
