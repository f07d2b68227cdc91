"""rpm: remote patient monitoring ingest and alerting."""

__version__ = "0.1.0"
