-- Each patient's days with readings (any device) as one bit string: bit n (from the left,
-- from 0) is set when `reading_day` has a row for local day `first_day + n`. A period's
-- days with readings are then one bit count on one row, instead of a range of
-- `reading_day` per patient: ranking 100,000 patients' current periods (the admin's
-- at-risk list) reads 100,000 short rows, not 3 million index entries
-- (docs/program-operations.md). A year is 46 bytes.
--
-- Who keeps it true: the trigger below, from the rows `reading_day` gains (ingest's upsert
-- inserts a row on a device's first reading of a day). Bits are only ever set, and setting
-- one twice changes nothing, so the calendar is exactly the days `reading_day` has as long
-- as its rows are not deleted; `reading_day_rebuild`, which deletes them, clears the
-- patient's calendar first.
CREATE TABLE reading_calendar (
    patient_id  bigint PRIMARY KEY,
    first_day   date NOT NULL,
    days        bit varying NOT NULL
);

-- The days as a calendar's bits from `first_day` to the last of them.
CREATE FUNCTION reading_calendar_bits(first_day date, days date[]) RETURNS bit varying
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(CASE WHEN d.day IS NULL THEN '0' ELSE '1' END, '' ORDER BY n)::varbit
    FROM generate_series(0, (SELECT max(day) FROM unnest(days) day) - first_day) n
    LEFT JOIN (SELECT DISTINCT day FROM unnest(days) day) d ON d.day = first_day + n
$$;

-- Two calendars' days together: both shifted to start on the earlier first day, padded to
-- the longer, and OR'd.
CREATE FUNCTION reading_calendar_union(
    a_first date, a_days bit varying, b_first date, b_days bit varying,
    OUT first_day date, OUT days bit varying
) LANGUAGE sql IMMUTABLE AS $$
    WITH shifted AS (
        SELECT least(a_first, b_first) AS first_day,
               repeat('0', a_first - least(a_first, b_first))::varbit || a_days AS a,
               repeat('0', b_first - least(a_first, b_first))::varbit || b_days AS b
    )
    SELECT first_day,
           (a || repeat('0', greatest(length(b) - length(a), 0))::varbit)
           | (b || repeat('0', greatest(length(a) - length(b), 0))::varbit)
    FROM shifted
$$;

-- Statement-level, with the statement's new rows: once per ingest batch, for the device-days
-- it added (most readings update a day that already has its row, and add nothing here).
CREATE FUNCTION reading_calendar_follows_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reading_calendar AS c (patient_id, first_day, days)
    SELECT patient_id, min(local_day), reading_calendar_bits(min(local_day), array_agg(local_day))
    FROM added GROUP BY patient_id
    ORDER BY patient_id
    ON CONFLICT (patient_id) DO UPDATE
    SET (first_day, days) = (
        SELECT u.first_day, u.days
        FROM reading_calendar_union(c.first_day, c.days, excluded.first_day, excluded.days) u
    );
    RETURN NULL;
END
$$;
CREATE TRIGGER reading_calendar_on_new_day AFTER INSERT ON reading_day
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION reading_calendar_follows_days();

-- As 0017's, clearing the calendars it recounts first (its INSERT sets them again).
CREATE OR REPLACE FUNCTION reading_day_rebuild(only_patient bigint DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Two statements, not one with "only_patient IS NULL OR ...": each gets its own plan
    -- (the whole table, or one patient's index range).
    IF only_patient IS NULL THEN
        DELETE FROM reading_day;
        DELETE FROM reading_calendar;
        INSERT INTO reading_day (patient_id, local_day, device_id, readings, last_measured_at)
        SELECT r.patient_id, (r.measured_at AT TIME ZONE p.time_zone)::date, r.device_id,
               count(*), max(r.measured_at)
        FROM reading r JOIN patient p ON p.id = r.patient_id
        WHERE r.statistic IS NULL
        GROUP BY 1, 2, 3;
    ELSE
        DELETE FROM reading_day WHERE patient_id = only_patient;
        DELETE FROM reading_calendar WHERE patient_id = only_patient;
        INSERT INTO reading_day (patient_id, local_day, device_id, readings, last_measured_at)
        SELECT r.patient_id, (r.measured_at AT TIME ZONE p.time_zone)::date, r.device_id,
               count(*), max(r.measured_at)
        FROM reading r JOIN patient p ON p.id = r.patient_id
        WHERE r.patient_id = only_patient AND r.statistic IS NULL
        GROUP BY 1, 2, 3;
    END IF;
END
$$;

INSERT INTO reading_calendar (patient_id, first_day, days)
SELECT patient_id, min(local_day), reading_calendar_bits(min(local_day), array_agg(local_day))
FROM reading_day GROUP BY patient_id;
