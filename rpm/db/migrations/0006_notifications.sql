-- The SMS outbox. A notification row is written in the transaction that opens, raises or
-- escalates its alert, so an alert change and its SMS are committed together or not at
-- all; dispatchers send the rows, each claimed by one of them (FOR UPDATE SKIP LOCKED).
CREATE TABLE notification (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id       bigint NOT NULL REFERENCES alert (id),
    staff_id       bigint NOT NULL REFERENCES staff (id),
    to_phone       text NOT NULL,
    -- Why it is sent: the alert opened or got worse, went up a tier, or a reminder.
    purpose        text NOT NULL
                   CHECK (purpose IN ('opened', 'severity_raised', 'escalated', 'reminded')),
    severity       text NOT NULL CHECK (severity IN ('warning', 'high', 'critical')),
    tier           smallint NOT NULL CHECK (tier BETWEEN 1 AND 3),
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN (
                       'pending',      -- waiting for its time (not_before)
                       'sending',      -- claimed; the outcome of the send is being recorded
                       'sent',         -- Twilio accepted it
                       'delivered', 'undelivered', 'failed',  -- Twilio's last word, or ours
                       'cancelled',    -- the alert was acknowledged or resolved first
                       'expired',      -- past its validity before it could go
                       'digested')),   -- counted into another row's digest SMS
    -- Not before this: quiet hours, a retry's backoff, a full rate-limit window.
    not_before     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    claimed_at     timestamptz,
    body           text,
    twilio_sid     text UNIQUE,
    error_code     integer,
    error_message  text,
    digest_of      integer NOT NULL DEFAULT 1,
    digested_into  bigint REFERENCES notification (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_due_idx ON notification (not_before, id) WHERE status = 'pending';
CREATE INDEX notification_claimed_idx ON notification (claimed_at) WHERE status = 'sending';
CREATE INDEX notification_alert_idx ON notification (alert_id);
CREATE INDEX notification_recent_idx ON notification (staff_id, sent_at) WHERE sent_at IS NOT NULL;
