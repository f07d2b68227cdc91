-- Days with readings, counted as readings arrive instead of when a page asks: per patient,
-- local day (on the patient's own clock) and device, how many single readings were measured
-- that day and when the last of them was. Adherence, billing, reminders and the huddle read
-- their days here (docs/program-operations.md). Summaries (`statistic`) are not counted.
--
-- Who keeps it true: ingest adds each batch's counts in the transaction that stores the
-- batch, for the readings it actually inserted (rpm/ingest/repository.py); a change of the
-- patient's time zone rebuilds their days (the trigger below). Readings are never moved or
-- deleted by rpm; SQL that writes `reading` by hand calls reading_day_rebuild afterwards.
-- A TimescaleDB retention policy drops readings but leaves their counts (as the billing
-- record of a period should outlive the raw data).
--
-- No foreign keys: every row is derived from `reading`, whose keys already guard both, and
-- the checks would cost ingest a look-up per row.
CREATE TABLE reading_day (
    patient_id        bigint NOT NULL,
    local_day         date NOT NULL,
    device_id         bigint NOT NULL,
    readings          integer NOT NULL CHECK (readings > 0),
    -- The day's last reading: so the patient's last reading is one index probe here.
    last_measured_at  timestamptz NOT NULL,
    PRIMARY KEY (patient_id, local_day, device_id)
);

-- The days recounted from `reading`: every patient's (NULL), or one patient's. The same
-- arithmetic as ingest's (PostgreSQL's AT TIME ZONE on the patient's zone), so a rebuild
-- and the incremental counts agree exactly.
CREATE FUNCTION reading_day_rebuild(only_patient bigint DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Two statements, not one with "only_patient IS NULL OR ...": each gets its own plan
    -- (the whole table, or one patient's index range).
    IF only_patient IS NULL THEN
        DELETE FROM reading_day;
        INSERT INTO reading_day (patient_id, local_day, device_id, readings, last_measured_at)
        SELECT r.patient_id, (r.measured_at AT TIME ZONE p.time_zone)::date, r.device_id,
               count(*), max(r.measured_at)
        FROM reading r JOIN patient p ON p.id = r.patient_id
        WHERE r.statistic IS NULL
        GROUP BY 1, 2, 3;
    ELSE
        DELETE FROM reading_day WHERE patient_id = only_patient;
        INSERT INTO reading_day (patient_id, local_day, device_id, readings, last_measured_at)
        SELECT r.patient_id, (r.measured_at AT TIME ZONE p.time_zone)::date, r.device_id,
               count(*), max(r.measured_at)
        FROM reading r JOIN patient p ON p.id = r.patient_id
        WHERE r.patient_id = only_patient AND r.statistic IS NULL
        GROUP BY 1, 2, 3;
    END IF;
END
$$;

-- A trigger rather than the registry's update path: no rpm path changes a zone today (it is
-- set at enrolment; a correction is an UPDATE by hand), and a trigger covers every writer,
-- as care_episode_follows_status does for the status. The UPDATE's row lock on the patient
-- also orders it against ingest, which takes FOR SHARE on the batch's patients: a batch
-- either commits before the rebuild reads `reading`, or counts on the new zone.
CREATE FUNCTION reading_day_follows_time_zone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reading_day_rebuild(NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER reading_day_on_time_zone AFTER UPDATE OF time_zone ON patient
    FOR EACH ROW WHEN (OLD.time_zone IS DISTINCT FROM NEW.time_zone)
    EXECUTE FUNCTION reading_day_follows_time_zone();

SELECT reading_day_rebuild();
