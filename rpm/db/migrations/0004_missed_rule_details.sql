-- The missed-readings check builds its rules from this table alone, without parsing each
-- due patient's plan document (20,000 parses took most of a run over 100,000 patients).

ALTER TABLE missed_reading_rule
    ADD COLUMN plan_version  integer,
    ADD COLUMN severity      text NOT NULL DEFAULT 'warning'
                             CHECK (severity IN ('warning', 'high', 'critical')),
    ADD COLUMN advice        text NOT NULL DEFAULT '';

UPDATE missed_reading_rule m
SET plan_version = c.version,
    severity = coalesce(r.rule ->> 'severity', 'warning'),
    advice = coalesce(r.rule ->> 'advice', '')
FROM care_plan c
JOIN care_plan_version v ON v.patient_id = c.patient_id AND v.version = c.version
CROSS JOIN LATERAL jsonb_array_elements(v.document -> 'rules') AS r(rule)
WHERE c.patient_id = m.patient_id AND r.rule ->> 'id' = m.rule_id;

ALTER TABLE missed_reading_rule ALTER COLUMN plan_version SET NOT NULL;
