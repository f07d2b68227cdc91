-- Hand-offs between shifts and disciplines (the huddle board, docs/web-ui.md): notes on a
-- patient, and the care-team member who owns the patient's follow-up.

-- A note is what one member of the care team wrote for the others: who, in which role,
-- when. Notes are never edited or deleted (a correction is a new note), and never leave
-- the service in an SMS.
CREATE TABLE patient_note (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patient (id),
    staff_id    bigint NOT NULL REFERENCES staff (id),
    -- The author's role when writing: a physician's note reads differently from a nurse's.
    staff_role  text NOT NULL CHECK (staff_role IN ('nurse', 'care_manager', 'physician', 'admin')),
    body        text NOT NULL CHECK (length(btrim(body)) BETWEEN 1 AND 4000),
    written_at  timestamptz NOT NULL DEFAULT now(),
    written_by  text NOT NULL
);
CREATE INDEX patient_note_patient_idx ON patient_note (patient_id, written_at DESC, id DESC);

CREATE FUNCTION patient_note_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'patient_note is append-only: % is not allowed (write a new note)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER patient_note_no_update_or_delete BEFORE UPDATE OR DELETE ON patient_note
    FOR EACH ROW EXECUTE FUNCTION patient_note_is_append_only();
CREATE TRIGGER patient_note_no_truncate BEFORE TRUNCATE ON patient_note
    FOR EACH STATEMENT EXECUTE FUNCTION patient_note_is_append_only();

-- Who follows the patient up after the huddle (NULL: nobody yet). Changes are audited by
-- the service that makes them, not kept here.
ALTER TABLE patient ADD COLUMN follow_up_staff_id bigint REFERENCES staff (id);
