"""Readings pushed into the clinic's EHR as FHIR transaction Bundles, through an outbox."""
