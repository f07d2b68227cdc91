-- "My alerts": the worklist filtered by assignee, in worklist order. Without it the filter
-- scanned every unresolved alert (p99 55-81 ms at 100,000; docs/benchmarks.md, "Alerts").
CREATE INDEX alert_assignee_worklist_idx ON alert (assigned_to, severity_rank DESC, opened_at, id)
    WHERE status <> 'resolved' AND assigned_to IS NOT NULL;
