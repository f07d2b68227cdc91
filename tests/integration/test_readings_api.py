"""A patient's readings over HTTP against the real PostgreSQL: pages by key, filters, and
the downsampled series for charts (date_bin here; time_bucket on a TimescaleDB run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support import signed_in

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def admin(service: TestClient, db_url: str) -> TestClient:
    """The service, signed in as an admin: who sees every patient's readings."""
    return signed_in(service, db_url, "admin-1")


@pytest.fixture
def patient(db_url: str) -> int:
    """A patient with a cuff (12 readings, every 6 hours from T0, systolic 120 + i) and a
    scale (one reading), and a weekly average summary that series leave out."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        patient_id = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " VALUES ('P-1', 'T', 'P') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        cuff, scale = (
            conn.execute(
                "INSERT INTO device (serial, kind) VALUES (%s, %s) RETURNING id", [serial, kind]
            ).fetchone()[0]  # type: ignore[index]
            for serial, kind in (("BP-1", "blood_pressure_cuff"), ("SC-1", "weight_scale"))
        )
        for i in range(12):
            conn.execute(
                "INSERT INTO reading (device_id, kind, measured_at, patient_id, systolic_mmhg,"
                " diastolic_mmhg, pulse_bpm, original, source)"
                " VALUES (%s, 'blood_pressure', %s, %s, %s, 80, 70, '{}', 'native')",
                [cuff, T0 + timedelta(hours=6 * i), patient_id, 120 + i],
            )
        conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, systolic_mmhg,"
            " diastolic_mmhg, statistic, original, source)"
            " VALUES (%s, 'blood_pressure', %s, %s, 200, 100, 'average', '{}', 'omh')",
            [cuff, T0 + timedelta(minutes=1), patient_id],
        )
        conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, weight_kg,"
            " original, source) VALUES (%s, 'body_weight', %s, %s, 81.5, '{}', 'native')",
            [scale, T0 + timedelta(hours=6), patient_id],
        )
    return int(patient_id)


def _get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_readings_page_newest_first_by_key_with_filters(admin: TestClient, patient: int) -> None:
    path = f"/api/v1/patients/{patient}/readings"
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        page = _get(admin, path, limit=5, **({"after": after} if after else {}))
        seen += [(r["measured_at"], r["kind"]) for r in page["readings"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 14
    assert seen == sorted(seen, reverse=True)

    weights = _get(admin, path, kind="body_weight")["readings"]
    assert [(r["device_serial"], r["weight_kg"]) for r in weights] == [("SC-1", 81.5)]
    day_two = _get(
        admin, path, kind="blood_pressure",
        since=(T0 + timedelta(days=1)).isoformat(), until=(T0 + timedelta(days=2)).isoformat(),
    )["readings"]  # fmt: skip
    assert [r["systolic_mmhg"] for r in day_two] == [127, 126, 125, 124]

    bad = admin.get(path, params={"after": "not-a-token"})
    assert bad.status_code == 422
    assert "previous page's `next`" in bad.json()["detail"]
    assert admin.get("/api/v1/patients/999999/readings").status_code == 404


def test_a_series_buckets_single_readings_and_leaves_summaries_out(
    admin: TestClient, patient: int
) -> None:
    path = f"/api/v1/patients/{patient}/readings/series"
    window = {"since": T0.isoformat(), "until": (T0 + timedelta(days=3)).isoformat()}
    daily = _get(admin, path, kind="blood_pressure", width="1d", **window)
    assert daily["width"] == "1d"
    assert [b["count"] for b in daily["buckets"]] == [4, 4, 4]
    first = daily["buckets"][0]
    assert first["systolic_mmhg"] == {"mean": 121.5, "min": 120, "max": 123}
    assert first["diastolic_mmhg"] == {"mean": 80, "min": 80, "max": 80}
    assert first["weight_kg"] is None

    # Three days at <= 400 buckets: 15 minutes is narrow enough; empty buckets are left out.
    auto = _get(admin, path, kind="blood_pressure", **window)
    assert auto["width"] == "15m"
    assert len(auto["buckets"]) == 12

    too_fine = admin.get(
        path,
        params={"kind": "blood_pressure", "width": "15m", "since": T0.isoformat(),
                "until": (T0 + timedelta(days=30)).isoformat()},
    )  # fmt: skip
    assert too_fine.status_code == 422
    assert "widen the bucket" in too_fine.json()["detail"]
    backwards = admin.get(
        path, params={"kind": "blood_pressure", "since": window["until"], "until": window["since"]}
    )
    assert backwards.status_code == 422


def test_each_reading_also_gives_the_time_on_the_device_s_own_clock(
    admin: TestClient, db_url: str, patient: int
) -> None:
    """ "07:30 at home stays 07:30": the offset the device sent comes back beside UTC."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE reading SET measured_utc_offset_min = -360"
            " WHERE kind = 'body_weight' AND patient_id = %s",
            [patient],
        )
    readings = _get(admin, f"/api/v1/patients/{patient}/readings", kind="body_weight")
    (weight,) = readings["readings"]
    assert weight["measured_at"] == "2026-11-01T06:00:00Z"
    assert weight["measured_at_local"] == "2026-11-01T00:00:00-06:00"
    cuff = _get(admin, f"/api/v1/patients/{patient}/readings", kind="blood_pressure", limit=1)
    assert cuff["readings"][0]["measured_at_local"] is None  # no offset sent
