"""Sign-in, roles and the audit trail."""
