"""The FHIR export against the real PostgreSQL, with readings stored by the real ingest
path from what devices send (native and Open mHealth, in every unit): the searchset
Bundle and each Observation in it valid to fhir.resources' R4B models, date prefixes and
partial dates, pages, refusals as OperationOutcomes, the NDJSON export, the audit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.operationoutcome import OperationOutcome

from rpm.api import fhir as fhir_api
from tests.fhir_checks import check_observation, check_searchset
from tests.support import (
    TEST_PASSWORD,
    Ward,
    add_user,
    api_call_through,
    as_nobody,
    bearer,
    receive,
    sign_in_as,
)

ASSIGNED = "2026-09-01T00:00:00-05:00"

# What the patient's devices sent (patient in America/Chicago: CST, UTC-6, from 1 November).
READINGS: list[tuple[str, dict[str, Any]]] = [
    ("BP-F1", {"kind": "blood_pressure", "measured_at": "2026-10-15T08:00:00-05:00",
               "systolic": 140, "diastolic": 90, "pulse": 80, "unit": "mmHg"}),
    ("BP-F1", {"kind": "blood_pressure", "measured_at": "2026-11-02T07:30:00-06:00",
               "systolic": 128, "diastolic": 82, "pulse": 71, "unit": "mmHg"}),
    ("BP-F1", {"systolic_blood_pressure": {"value": 115, "unit": "mmHg"},
               "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
               "effective_time_frame": {"date_time": "2026-11-02T19:00:00-06:00"}}),
    ("BP-F1", {"heart_rate": {"value": 64, "unit": "beats/min"},
               "effective_time_frame": {"date_time": "2026-11-03T07:00:00-06:00"}}),
    ("SC-F1", {"kind": "body_weight", "measured_at": "2026-11-03T07:05:00-06:00",
               "weight": 82.3, "unit": "kg"}),
    # A week's average: a summary, never exported.
    ("BP-F1", {"systolic_blood_pressure": {"value": 130, "unit": "mmHg"},
               "diastolic_blood_pressure": {"value": 85, "unit": "mmHg"},
               "effective_time_frame": {"time_interval": {
                   "start_date_time": "2026-11-03T00:00:00-06:00",
                   "end_date_time": "2026-11-10T00:00:00-06:00"}},
               "descriptive_statistic": "average"}),
    # 23:30 on the 23rd at home is already the 24th in UTC.
    ("GL-F1", {"kind": "blood_glucose", "measured_at": "2026-11-23T23:30:00-06:00",
               "glucose": 97, "unit": "mg/dL", "meal": "bedtime"}),
    ("GL-F1", {"kind": "blood_glucose", "measured_at": "2026-11-24T07:00:00-06:00",
               "glucose": 5.4, "unit": "mmol/L", "meal": "fasting"}),
    ("SC-F1", {"kind": "body_weight", "measured_at": "2026-11-24T07:05:00-06:00",
               "weight": 181.4, "unit": "lb"}),
    # The neighbour's (same team) and the stranger's (another team).
    ("SC-F2", {"kind": "body_weight", "measured_at": "2026-11-05T08:00:00-06:00",
               "weight": 70.1, "unit": "kg"}),
    ("SC-F9", {"kind": "body_weight", "measured_at": "2026-11-05T08:00:00-06:00",
               "weight": 90.4, "unit": "kg"}),
]  # fmt: skip
# The patient's Observations, oldest first: (LOINC code, effectiveDateTime, value).
EXPECTED = [
    ("85354-9", "2026-10-15T08:00:00-05:00", (140, 90)),
    ("8867-4", "2026-10-15T08:00:00-05:00", 80),
    ("85354-9", "2026-11-02T07:30:00-06:00", (128, 82)),
    ("8867-4", "2026-11-02T07:30:00-06:00", 71),
    ("85354-9", "2026-11-02T19:00:00-06:00", (115, 60)),
    ("8867-4", "2026-11-03T07:00:00-06:00", 64),
    ("29463-7", "2026-11-03T07:05:00-06:00", 82.3),
    ("41653-7", "2026-11-23T23:30:00-06:00", 97),
    ("41653-7", "2026-11-24T07:00:00-06:00", 97),  # from 5.4 mmol/L
    ("29463-7", "2026-11-24T07:05:00-06:00", 82.3),  # from 181.4 lb
]


@dataclass(frozen=True)
class Clinic:
    client: TestClient
    db_url: str
    admin: dict[str, str]
    nurse: dict[str, str]
    patient: int
    neighbour: int
    stranger: int


@pytest.fixture
def clinic(service: TestClient, db_url: str) -> Clinic:
    """Team A (nurse-1, the patient, the neighbour) and team B (the stranger), their
    devices assigned since September, and READINGS received through ingest."""
    admin = sign_in_as(service, db_url, "admin-1")
    call = api_call_through(service, admin)
    ward, elsewhere = Ward.open(call, "Team A"), Ward.open(call, "Team B")
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD, ward.staff("nurse-1", "Nurse One"))
    patient, neighbour = ward.patient("MRN-F1"), ward.patient("MRN-F2")
    stranger = elsewhere.patient("MRN-F9")
    devices = [
        ("BP-F1", "blood_pressure_cuff", patient),
        ("SC-F1", "weight_scale", patient),
        ("GL-F1", "glucometer", patient),
        ("SC-F2", "weight_scale", neighbour),
        ("SC-F9", "weight_scale", stranger),
    ]
    for serial, kind, owner in devices:
        call("POST", "/api/v1/devices", {"serial": serial, "kind": kind})
        call("POST", f"/api/v1/devices/{serial}/assign", {"patient_id": owner, "at": ASSIGNED})
    for serial, payload in READINGS:
        received = _measured_at(payload) + timedelta(minutes=1)
        topic = f"rpm/v1/devices/{serial}/readings"
        receive(service, topic, json.dumps(payload).encode(), received)
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT count(*) FROM reading").fetchone()
    assert stored == (len(READINGS),)
    nurse = bearer(service, "nurse-1", TEST_PASSWORD)
    return Clinic(service, db_url, admin, nurse, patient, neighbour, stranger)


def _measured_at(payload: dict[str, Any]) -> datetime:
    frame = payload.get("effective_time_frame", {})
    written = payload.get("measured_at") or frame.get("date_time")
    return datetime.fromisoformat(written or frame["time_interval"]["end_date_time"])


def _search(clinic: Clinic, headers: dict[str, str] | None = None, **params: Any) -> Any:
    response = clinic.client.get(
        "/fhir/Observation", params=params, headers=headers or clinic.nurse
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    return response.json()


def _summary(resources: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(LOINC code, effectiveDateTime, value) of each, as EXPECTED writes them."""
    summary = []
    for resource in resources:
        if "valueQuantity" in resource:
            value: Any = resource["valueQuantity"]["value"]
        else:
            value = tuple(c["valueQuantity"]["value"] for c in resource["component"])
        code = resource["code"]["coding"][0]["code"]
        summary.append((code, resource["effectiveDateTime"], value))
    return summary


def _outcome(response: Any, status: int, says: str) -> None:
    """A refusal as FHIR says it: an OperationOutcome whose diagnostics say why."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    OperationOutcome.model_validate(response.json())
    (issue,) = response.json()["issue"]
    assert issue["severity"] == "error"
    assert says in issue["diagnostics"], issue["diagnostics"]


def _audit(clinic: Clinic) -> list[tuple[Any, ...]]:
    with psycopg.connect(clinic.db_url) as conn:
        return conn.execute(
            "SELECT username, action, resource, patient_id, status, details FROM audit_event"
            " WHERE resource IN ('fhir_observations', 'patient') ORDER BY id"
        ).fetchall()


def test_a_search_is_a_valid_searchset_of_every_kind_and_unit(clinic: Clinic) -> None:
    bundle = _search(clinic, patient=clinic.patient)
    resources = check_searchset(bundle)
    assert _summary(resources) == EXPECTED
    assert {r["subject"]["reference"] for r in resources} == {f"Patient/{clinic.patient}"}
    assert {r["device"]["display"] for r in resources} == {"BP-F1", "SC-F1", "GL-F1"}
    assert bundle["link"] == [
        {
            "relation": "self",
            "url": f"http://testserver/fhir/Observation?patient={clinic.patient}&_count=100",
        }
    ]
    # The same reading has the same id in the next search, and as a reference.
    again = check_searchset(_search(clinic, patient=f"Patient/{clinic.patient}"))
    assert [r["id"] for r in again] == [r["id"] for r in resources]
    assert len({r["id"] for r in resources}) == len(resources)

    audited = [row for row in _audit(clinic) if row[1] == "read"]
    assert (
        audited
        == [
            ("nurse-1", "read", "fhir_observations", clinic.patient, 200, {"date": []}),
        ]
        * 2
    )


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (["2026"], EXPECTED),
        (["2026-11"], EXPECTED[2:]),
        (["ne2026-11"], EXPECTED[:2]),
        # A day is the patient's (Chicago): 23:30 on the 23rd, though the 24th in UTC.
        (["2026-11-23"], EXPECTED[7:8]),
        (["ge2026-11-24"], EXPECTED[8:]),
        (["gt2026-11-23"], EXPECTED[8:]),
        (["le2026-11-02"], EXPECTED[:5]),
        (["lt2026-11-02T07:30:00-06:00"], EXPECTED[:2]),
        (["le2026-11-02T07:30:00-06:00"], EXPECTED[:4]),
        (["eq2026-11-03T13:00:00Z"], EXPECTED[5:6]),
        (["2026-11-03T07:05-06:00"], EXPECTED[6:7]),
        (["gt2026-11-02T07:30:00-06:00", "lt2026-11-03"], EXPECTED[4:5]),
        (["ge2026-11-01", "lt2026-12", "ne2026-11-03"], EXPECTED[2:5] + EXPECTED[7:]),
        (["lt2026-10", "gt2026-11"], []),
    ],
)
def test_dates_with_prefixes_and_partial_dates(
    clinic: Clinic, dates: list[str], expected: list[tuple[str, str, Any]]
) -> None:
    bundle = _search(clinic, patient=clinic.patient, date=dates)
    assert _summary(check_searchset(bundle)) == expected
    assert bundle["link"][0]["url"].count("&date=") == len(dates)


def test_pages_follow_next_to_the_end(clinic: Clinic) -> None:
    """Three a page: the first ends between a blood-pressure panel and its pulse."""
    first = _search(clinic, patient=clinic.patient, _count=3)
    url: str | None = first["link"][0]["url"]
    pages: list[list[dict[str, Any]]] = []
    while url is not None:
        response = clinic.client.get(url, headers=clinic.nurse)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append(check_searchset(bundle))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert _summary([r for page in pages for r in page]) == EXPECTED

    # Beyond the most a page holds: cut to it, as FHIR allows.
    capped = _search(clinic, patient=clinic.patient, _count=5000)
    assert "_count=1000" in capped["link"][0]["url"]
    assert len(capped["entry"]) == len(EXPECTED)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"date": "2026-13"}, "date '2026-13': month must be in 1..12"),
        ({"date": "2026-11-24T07:30"}, "a time needs its time zone"),
        ({"date": "ap2026"}, "the prefix 'ap' is not supported"),
        ({"category": "vital-signs"}, "not supported here: category (the Observation search"),
        ({"_sort": "-date"}, "oldest first only (_sort=date)"),
        ({"_include": "Observation:subject"}, "_include Observation:subject is not supported"),
        ({"code": "http://loinc.org|"}, "a token needs its code"),
        ({"_lastUpdated": "2026-11-24T07:30"}, "a time needs its time zone"),
        ({"_count": "0"}, "_count: Input should be greater than or equal to 1"),
        ({"_count": "ten"}, "_count: Input should be a valid integer"),
        ({"_cursor": "not-a-cursor"}, "follow the Bundle's `next` link"),
        ({"patient": "Practitioner/1"}, "give 123 or Patient/123"),
        ({"patient": None}, "query.patient: Field required"),
    ],
)
def test_a_bad_parameter_is_a_400_outcome_saying_which(
    clinic: Clinic, params: dict[str, Any], says: str
) -> None:
    query = {k: v for k, v in {"patient": clinic.patient, **params}.items() if v is not None}
    response = clinic.client.get("/fhir/Observation", params=query, headers=clinic.nurse)
    _outcome(response, 400, says)


def test_a_cursor_of_another_patients_search_is_refused(clinic: Clinic) -> None:
    first = _search(clinic, patient=clinic.patient, _count=1)
    next_url = first["link"][1]["url"]
    elsewhere = next_url.replace(f"patient={clinic.patient}", f"patient={clinic.neighbour}")
    _outcome(clinic.client.get(elsewhere, headers=clinic.nurse), 400, "`next` link")


def test_refusals_are_outcomes_and_another_teams_patient_is_not_there(clinic: Clinic) -> None:
    response = clinic.client.get(
        "/fhir/Observation", params={"patient": clinic.stranger}, headers=clinic.nurse
    )
    _outcome(response, 404, f"no patient with id {clinic.stranger}")
    assert _audit(clinic)[-1] == (
        "nurse-1", "denied", "patient", clinic.stranger, 404, {},
    )  # fmt: skip
    nobody = as_nobody(clinic.client, "GET", "/fhir/Observation", params={"patient": 1})
    _outcome(nobody, 401, "sign in first")
    assert nobody.headers["www-authenticate"] == "Bearer"
    _outcome(
        clinic.client.get("/fhir/Observation", params={"patient": 999999}, headers=clinic.admin),
        404,
        "no patient with id 999999",
    )
    # An admin sees every team's patient; the stranger's reading is theirs alone.
    (theirs,) = check_searchset(_search(clinic, clinic.admin, patient=clinic.stranger))
    assert theirs["subject"] == {"reference": f"Patient/{clinic.stranger}"}
    assert theirs["valueQuantity"]["value"] == 90.4


def _export(clinic: Clinic, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return clinic.client.post(
        "/api/v1/exports/observations", json=body, headers=headers or clinic.nurse
    )


def _lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+ndjson"
    assert response.text.endswith("\n")
    resources = [json.loads(line) for line in response.text.splitlines()]
    for resource in resources:
        check_observation(resource)
    return resources


def test_the_ndjson_export_streams_every_patients_observations(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two readings a batch: the export reads on across many batch boundaries.
    monkeypatch.setattr(fhir_api, "EXPORT_BATCH", 2)
    body = {
        "patient_ids": [clinic.neighbour, clinic.patient, clinic.patient],
        "start": "2026-10-01T00:00:00-05:00",
        "end": "2026-12-01T00:00:00-06:00",
    }
    resources = _lines(_export(clinic, body))
    by_patient = [r["subject"]["reference"] for r in resources]
    assert by_patient == [f"Patient/{clinic.patient}"] * len(EXPECTED) + [
        f"Patient/{clinic.neighbour}"
    ]
    assert _summary(resources[: len(EXPECTED)]) == EXPECTED
    assert resources[-1]["valueQuantity"]["value"] == 70.1
    # The same Observations as the search: the same ids.
    searched = check_searchset(_search(clinic, patient=clinic.patient))
    assert [r["id"] for r in resources[: len(EXPECTED)]] == [r["id"] for r in searched]

    # From (included) the first November reading until (left out) the last one.
    november = {
        "patient_ids": [clinic.patient],
        "start": "2026-11-02T07:30:00-06:00",
        "end": "2026-11-24T07:05:00-06:00",
    }
    assert _summary(_lines(_export(clinic, november))) == EXPECTED[2:-1]
    nothing = {**november, "start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}
    assert _export(clinic, nothing).text == ""

    exports = [row for row in _audit(clinic) if row[1] == "export"]
    assert exports[:2] == [
        ("nurse-1", "export", "fhir_observations", patient, 200,
         {"start": "2026-10-01T05:00:00+00:00", "end": "2026-12-01T06:00:00+00:00"})
        for patient in sorted([clinic.patient, clinic.neighbour])
    ]  # fmt: skip


def test_an_export_is_refused_before_anything_is_sent(clinic: Clinic) -> None:
    """Any patient out of view refuses it all (404, as for none), audited; so do bodies
    that do not fit. All as problem details, as elsewhere under /api/v1."""
    body = {
        "patient_ids": [clinic.patient, clinic.stranger],
        "start": "2026-10-01T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
    }
    refused = _export(clinic, body)
    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == f"no patient with id {clinic.stranger}"
    assert _audit(clinic)[-1][:4] == ("nurse-1", "denied", "patient", clinic.stranger)
    assert not [row for row in _audit(clinic) if row[1] == "export"]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"end": body["start"]}, "`end` must be after `start`"),
        ({"patient_ids": []}, "patient_ids: List should have at least 1 item"),
        ({"patient_ids": list(range(1, 102))}, "patient_ids: List should have at most 100"),
        ({"start": "2026-10-01T00:00:00"}, "start: Input should have timezone info"),
        ({"format": "csv"}, "format: Extra inputs are not permitted"),
    ]
    for bad, says in cases:
        response = _export(clinic, {**body, "patient_ids": [clinic.patient], **bad})
        assert response.status_code == 422, response.text
        assert says in response.json()["detail"], response.json()["detail"]
    nobody = as_nobody(clinic.client, "POST", "/api/v1/exports/observations", json=body)
    assert nobody.status_code == 401
