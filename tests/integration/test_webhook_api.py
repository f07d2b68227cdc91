"""POST /webhooks/tenovi: authenticated per integration, then the same pipeline as MQTT."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from rpm.devices.codecs import MAX_PAYLOAD_BYTES
from rpm.ingest import integrations
from rpm.ingest.integrations import Vendor

GATEWAY_DEVICE = "e9c24a26-7d69-490f-9546-93c5a31486aa"


def _setup(db_url: str) -> str:
    """A Tenovi integration and an assigned cuff; returns the integration's secret."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name) VALUES ('P-1', 'T', 'P')"
        )
        conn.execute(
            "INSERT INTO device (serial, kind) VALUES (%s, 'blood_pressure_cuff')",
            [GATEWAY_DEVICE],
        )
        conn.execute(
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " SELECT d.id, p.id, now() - interval '30 days' FROM device d, patient p"
        )
    return asyncio.run(_create_integration(db_url, "clinic-gateway"))[1]


async def _create_integration(db_url: str, name: str) -> tuple[object, str]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        return await integrations.create(conn, name, Vendor.TENOVI)


def _measurement(minutes_ago: int = 10) -> dict[str, object]:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "metric": "blood_pressure",
        "hwi_device_id": GATEWAY_DEVICE,
        "value_1": "128.00",
        "value_2": "82.00",
        "created": at.isoformat(),
        "timestamp": at.isoformat(),
        "timezone_offset": -5,
        "estimated_timestamp": False,
    }


def test_a_measurement_is_stored_once_and_attributed(service: TestClient, db_url: str) -> None:
    secret = _setup(db_url)
    body = json.dumps([_measurement(10), _measurement(5)])
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    first = service.post("/webhooks/tenovi", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 2, "duplicates": 0, "dead_lettered": 0, "rejections": []}
    # The vendor retries (it did not see our reply): nothing is stored twice.
    bare = {"Authorization": secret}
    again = service.post("/webhooks/tenovi", content=body, headers=bare)
    assert again.json()["duplicates"] == 2

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT r.source, r.systolic_mmhg, r.measured_utc_offset_min, p.external_ref"
            " FROM reading r JOIN patient p ON p.id = r.patient_id"
        ).fetchall()
    assert rows == [("tenovi", 128.0, -300, "P-1")] * 2


def test_bad_bodies_are_dead_lettered_under_the_integration(
    service: TestClient, db_url: str
) -> None:
    secret = _setup(db_url)
    headers = {"Authorization": f"Bearer {secret}"}
    malformed = service.post("/webhooks/tenovi", content=b"{not json", headers=headers)
    assert malformed.status_code == 200
    receipt = malformed.json()
    assert (receipt["stored"], receipt["dead_lettered"]) == (0, 1)
    assert receipt["rejections"][0].startswith("malformed_json: ")

    unknown = dict(_measurement(), hwi_device_id="not-registered")
    service.post("/webhooks/tenovi", json=unknown, headers=headers)
    with psycopg.connect(db_url) as conn:
        letters = conn.execute(
            "SELECT source, topic, reason, device_serial FROM rejected_message ORDER BY id"
        ).fetchall()
    assert letters == [
        ("http", "webhook/tenovi/clinic-gateway", "malformed_json", None),
        ("http", "webhook/tenovi/clinic-gateway", "unknown_device", "not-registered"),
    ]


def test_only_an_active_integration_secret_is_let_in(service: TestClient, db_url: str) -> None:
    secret = _setup(db_url)
    body = json.dumps(_measurement())
    missing = service.post("/webhooks/tenovi", content=body)
    assert missing.status_code == 401
    assert "Authorization header" in missing.json()["detail"]
    wrong = service.post("/webhooks/tenovi", content=body, headers={"Authorization": "rpmwh_x"})
    assert wrong.status_code == 401

    async def revoke() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await integrations.revoke(conn, "clinic-gateway")

    asyncio.run(revoke())
    revoked = service.post("/webhooks/tenovi", content=body, headers={"Authorization": secret})
    assert revoked.status_code == 401
    with psycopg.connect(db_url) as conn:
        kept = conn.execute(
            "SELECT (SELECT count(*) FROM reading) + (SELECT count(*) FROM rejected_message)"
        ).fetchone()
    assert kept == (0,)


def test_an_oversized_body_is_refused(service: TestClient, db_url: str) -> None:
    secret = _setup(db_url)
    too_big = b"[" + b" " * MAX_PAYLOAD_BYTES + b"]"
    refused = service.post("/webhooks/tenovi", content=too_big, headers={"Authorization": secret})
    assert refused.status_code == 413
    assert str(MAX_PAYLOAD_BYTES) in refused.json()["detail"]
