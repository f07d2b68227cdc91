"""FHIR R4: readings as Observations (docs/fhir.md)."""
