-- When a patient's and a device's FHIR resource last changed: its `meta.lastUpdated`,
-- its versionId and a read's ETag and Last-Modified (docs/fhir.md). Only a change to
-- what the resource shows counts: a device reporting in (last_seen_at, battery) or a
-- patient's reminder settings leave them as they are.

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

ALTER TABLE patient ADD COLUMN updated_at timestamptz;
UPDATE patient SET updated_at = created_at;
ALTER TABLE patient ALTER COLUMN updated_at SET NOT NULL,
                    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER patient_updated_at BEFORE UPDATE ON patient FOR EACH ROW
    WHEN ((OLD.external_ref, OLD.given_name, OLD.family_name, OLD.birth_date, OLD.status)
          IS DISTINCT FROM
          (NEW.external_ref, NEW.given_name, NEW.family_name, NEW.birth_date, NEW.status))
    EXECUTE FUNCTION touch_updated_at();

ALTER TABLE device ADD COLUMN updated_at timestamptz;
UPDATE device d SET updated_at = greatest(d.registered_at, (
    SELECT max(coalesce(a.unassigned_at, a.assigned_at)) FROM device_assignment a
    WHERE a.device_id = d.id));
ALTER TABLE device ALTER COLUMN updated_at SET NOT NULL,
                   ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER device_updated_at BEFORE UPDATE ON device FOR EACH ROW
    WHEN ((OLD.serial, OLD.kind, OLD.model, OLD.status, OLD.firmware)
          IS DISTINCT FROM (NEW.serial, NEW.kind, NEW.model, NEW.status, NEW.firmware))
    EXECUTE FUNCTION touch_updated_at();

-- Assigning a device and taking it back change whose it is: its resource's `patient`.
CREATE FUNCTION touch_assigned_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device SET updated_at = now() WHERE id = NEW.device_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER device_assignment_touches_device AFTER INSERT OR UPDATE ON device_assignment
    FOR EACH ROW EXECUTE FUNCTION touch_assigned_device();
