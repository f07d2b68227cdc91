"""Prometheus metrics of the ingest pipeline, served on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES_RECEIVED = Counter("rpm_ingest_messages_received", "Messages received", ["transport"])
READINGS_STORED = Counter("rpm_ingest_readings_stored", "Readings stored")
READINGS_DUPLICATE = Counter(
    "rpm_ingest_readings_duplicate", "Readings already stored (redelivered or re-sent)"
)
MESSAGES_REJECTED = Counter(
    "rpm_ingest_messages_rejected", "Messages dead-lettered, by first reason", ["reason"]
)
BATCH_SIZE = Histogram(
    "rpm_ingest_batch_messages",
    "Messages per committed batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
COMMIT_SECONDS = Histogram(
    "rpm_ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
