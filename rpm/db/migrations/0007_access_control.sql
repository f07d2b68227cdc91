-- Sign-in, API keys, and the audit trail of every read and change of patient data.

-- A login. Nurses and care managers are care-team members (`staff_id`): the patients
-- of their teams are the only ones they see. Integrations sign in with API keys only.
CREATE TABLE app_user (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username            text NOT NULL UNIQUE
                        CONSTRAINT app_user_username_form CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role                text NOT NULL
                        CHECK (role IN ('nurse', 'care_manager', 'admin', 'integration')),
    staff_id            bigint UNIQUE REFERENCES staff (id),
    -- argon2id, in its PHC string form; NULL: no password sign-in.
    password_hash       text,
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text NOT NULL,
    password_changed_at timestamptz,
    CONSTRAINT app_user_integration_has_no_password
        CHECK (role <> 'integration' OR password_hash IS NULL)
);

-- A signed-in client: an API bearer token (absolute lifetime) or a browser session
-- (also ends after `idle_timeout` without a request). Only the token's SHA-256 is kept:
-- it is 256 random bits, so a slow hash would add nothing.
CREATE TABLE auth_session (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    bytea NOT NULL UNIQUE,
    user_id       bigint NOT NULL REFERENCES app_user (id),
    kind          text NOT NULL CHECK (kind IN ('api_token', 'browser')),
    csrf_token    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    idle_timeout  interval,
    revoked_at    timestamptz,
    client_ip     inet
);
CREATE INDEX auth_session_user_idx ON auth_session (user_id) WHERE revoked_at IS NULL;

-- An integration's key: "rpm_<prefix>_<secret>". The prefix finds the row and is shown
-- in lists; the secret is shown once, at creation, and kept as its SHA-256.
CREATE TABLE api_key (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES app_user (id),
    name          text NOT NULL CHECK (name <> ''),
    prefix        text NOT NULL UNIQUE,
    secret_hash   bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    revoked_by    text
);

-- Failed sign-ins, by the username tried (known or not) and the address: the login
-- throttle counts them. Old rows can go; the audit trail keeps each attempt too.
CREATE TABLE login_failure (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username   text NOT NULL,
    client_ip  inet,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failure_username_idx ON login_failure (username, at);
CREATE INDEX login_failure_client_idx ON login_failure (client_ip, at);

-- Who read or changed what, of which patient, when, from where. Append-only, as
-- alert_event is: nothing in the application can rewrite or delete it.
CREATE TABLE audit_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    user_id      bigint,
    username     text NOT NULL,
    role         text,
    action       text NOT NULL,
    resource     text NOT NULL,
    resource_id  text,
    -- No foreign key: the trail must outlive what it names.
    patient_id   bigint,
    method       text,
    path         text,
    status       smallint,
    client_ip    inet,
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_event_at_idx ON audit_event (at);
CREATE INDEX audit_event_patient_idx ON audit_event (patient_id, at) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_event_user_idx ON audit_event (username, at);

CREATE FUNCTION audit_event_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_event_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_is_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_is_append_only();
