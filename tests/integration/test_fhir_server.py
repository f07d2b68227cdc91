"""rpm as a FHIR server against the real PostgreSQL: the CapabilityStatement, reads with
their ETag and Last-Modified, searches of Observation (code, _id, _lastUpdated, _sort,
_include), Patient, Device and Flag, care-team scoping and audit, and every refusal under
/fhir an OperationOutcome. Every resource served is validated with fhir.resources' R4B
models (and, where node is here, with @medplum/core's validator: tests/fhir-validator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.fhir_checks import check_resource, check_searchset, included
from tests.fhir_validator import validate_with_medplum
from tests.integration.test_fhir_api import EXPECTED, Clinic, _outcome, _summary, clinic
from tests.support import add_alert

__all__ = ["clinic"]  # the fixture, shared with the Observation search's tests


def _get(clinic: Clinic, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    # No params at all for a link to follow: httpx would put an empty query in its place.
    response = clinic.client.get(path, params=params or None, headers=headers or clinic.nurse)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    return response


def _searched(
    clinic: Clinic,
    of: str,
    served: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    **params: Any,
) -> list[Any]:
    """The matches of a search (its Bundle valid), each kept in `served` for medplum."""
    bundle = _get(clinic, f"/fhir/{of}", headers, **params).json()
    served.append(bundle)
    return check_searchset(bundle, of)


def _device_id(clinic: Clinic, serial: str) -> int:
    with psycopg.connect(clinic.db_url) as conn:
        row = conn.execute("SELECT id FROM device WHERE serial = %s", [serial]).fetchone()
    assert row is not None
    return int(row[0])


def _fhir_audit(clinic: Clinic) -> list[tuple[Any, ...]]:
    with psycopg.connect(clinic.db_url) as conn:
        return conn.execute(
            "SELECT action, resource, resource_id, patient_id, status FROM audit_event"
            " WHERE resource LIKE 'fhir_%%' OR action = 'denied' ORDER BY id"
        ).fetchall()


def test_the_capability_statement_is_public_and_lists_each_resource(clinic: Clinic) -> None:
    response = clinic.client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    check_resource(statement)
    validate_with_medplum([statement])
    (rest,) = statement["rest"]
    assert [r["type"] for r in rest["resource"]] == [
        "Observation", "Patient", "Device", "Flag", "Group"
    ]  # fmt: skip
    assert statement["fhirVersion"] == "4.0.1"


def test_every_resource_is_read_with_its_version_and_searched(clinic: Clinic) -> None:
    """Read each type by the id its search gives, with ETag, Last-Modified and a 304 to a
    client that has the version; every resource served valid to both validators."""
    alert = add_alert(clinic.db_url, clinic.patient, "bp_crisis", "critical", "Systolic 182")
    served: list[dict[str, Any]] = []
    observations = _searched(clinic, "Observation", served, patient=clinic.patient)
    (patient,) = _searched(clinic, "Patient", served, identifier="MRN-F1")
    devices = _searched(clinic, "Device", served, patient=clinic.patient)
    (flag,) = _searched(clinic, "Flag", served, patient=clinic.patient)
    assert patient["identifier"][0]["value"] == "MRN-F1"
    assert {d["serialNumber"] for d in devices} == {"BP-F1", "SC-F1", "GL-F1"}
    assert {d["patient"]["reference"] for d in devices} == {f"Patient/{clinic.patient}"}
    assert (flag["id"], flag["status"]) == (str(alert), "active")
    # Bedtime and fasting, as the meter sent them.
    meals = [o["component"][0]["valueCodeableConcept"]["coding"][0]["code"]
             for o in observations if o["code"]["coding"][0]["code"] == "41653-7"]  # fmt: skip
    assert meals == ["8417908", "8417876"]

    for resource in [observations[0], observations[1], patient, devices[0], flag]:
        path = f"/fhir/{resource['resourceType']}/{resource['id']}"
        response = _get(clinic, path)
        assert response.json() == resource
        served.append(response.json())
        version = resource["meta"]["versionId"]
        assert response.headers["etag"] == f'W/"{version}"'
        modified = datetime.strptime(response.headers["last-modified"], "%a, %d %b %Y %H:%M:%S GMT")
        lastupdated = datetime.fromisoformat(resource["meta"]["lastUpdated"])
        assert modified.replace(tzinfo=UTC) == lastupdated.replace(microsecond=0)
        has_it = {**clinic.nurse, "If-None-Match": f'W/"{version}"'}
        cached = clinic.client.get(path, headers=has_it)
        assert cached.status_code == 304
    validate_with_medplum(served)


def test_a_change_is_a_new_version(clinic: Clinic) -> None:
    """Resolving an alert, moving a device or discharging a patient: a new versionId and
    lastUpdated; the resolved alert reads as an inactive Flag, no longer searched."""
    alert = add_alert(clinic.db_url, clinic.patient, "bp_crisis", "critical")
    device = _device_id(clinic, "SC-F1")
    paths = [f"/fhir/Flag/{alert}", f"/fhir/Device/{device}", f"/fhir/Patient/{clinic.patient}"]
    before = [_get(clinic, path).json()["meta"]["versionId"] for path in paths]
    admin, nurse = clinic.admin, clinic.nurse
    changes = [
        (nurse, "POST", f"/api/v1/alerts/{alert}/resolve",
         {"outcome": "patient_contacted", "note": "Re-measured: fine."}),
        (admin, "POST", "/api/v1/devices/SC-F1/assign", {"patient_id": clinic.neighbour}),
        (admin, "PUT", f"/api/v1/patients/{clinic.patient}/status",
         {"status": "discharged", "reason": "Care ended."}),
    ]  # fmt: skip
    for headers, method, path, body in changes:
        response = clinic.client.request(method, path, json=body, headers=headers)
        assert response.is_success, response.text
    after = [_get(clinic, path, headers=admin).json() for path in paths]
    assert all(a != b for a, b in zip([a["meta"]["versionId"] for a in after], before, strict=True))
    flag, moved, discharged = after
    assert flag["status"] == "inactive"
    assert "end" in flag["period"]
    assert moved["patient"] == {"reference": f"Patient/{clinic.neighbour}"}
    assert discharged["active"] is False
    assert _searched(clinic, "Flag", [], patient=clinic.patient) == []


def test_observation_search_by_code_id_last_updated_with_includes(clinic: Clinic) -> None:
    served: list[dict[str, Any]] = []
    heart_rates = _searched(clinic, "Observation", served, patient=clinic.patient, code="8867-4")
    assert _summary(heart_rates) == [e for e in EXPECTED if e[0] == "8867-4"]
    both = _searched(clinic, "Observation", served, patient=clinic.patient,
                     code="http://loinc.org|29463-7,41653-7", _sort="date")  # fmt: skip
    assert _summary(both) == [e for e in EXPECTED if e[0] in ("29463-7", "41653-7")]
    assert _searched(clinic, "Observation", served, patient=clinic.patient,
                     code="http://snomed.info/sct|8867-4") == []  # fmt: skip

    everything = _searched(clinic, "Observation", served, patient=clinic.patient)
    wanted = [everything[1]["id"], everything[6]["id"]]
    by_id = _searched(clinic, "Observation", served, patient=clinic.patient, _id=",".join(wanted))
    assert [o["id"] for o in by_id] == wanted
    # Received a minute after measured: the last two on the 24th (UTC) from 13:01 on.
    recent = _searched(clinic, "Observation", served, patient=clinic.patient,
                       _lastUpdated="ge2026-11-24T13:01:00Z")  # fmt: skip
    assert _summary(recent) == EXPECTED[-2:]

    # A page of one heart rate each, every match in turn.
    url: str | None = f"/fhir/Observation?patient={clinic.patient}&code=8867-4&_count=1"
    paged = []
    while url is not None:
        bundle = _get(clinic, url).json()
        paged += check_searchset(bundle)
        url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
    assert [o["id"] for o in paged] == [o["id"] for o in heart_rates]

    response = _get(clinic, "/fhir/Observation", patient=clinic.patient, _count=3,
                    _include=["Observation:patient", "Observation:device"])  # fmt: skip
    bundle = response.json()
    served.append(bundle)
    assert len(check_searchset(bundle)) == 3
    extra = included(bundle)
    assert [(r["resourceType"], r["id"]) for r in extra] == [
        ("Patient", str(clinic.patient)), ("Device", str(_device_id(clinic, "BP-F1")))
    ]  # fmt: skip
    validate_with_medplum(served)


def test_searches_see_the_users_care_teams_only_and_are_audited(clinic: Clinic) -> None:
    add_alert(clinic.db_url, clinic.stranger, "bp_crisis", "critical")
    mine = add_alert(clinic.db_url, clinic.neighbour, "bp_crisis", "high")
    nurse_sees = {p["id"] for p in _searched(clinic, "Patient", [])}
    assert nurse_sees == {str(clinic.patient), str(clinic.neighbour)}
    admin_sees = {p["id"] for p in _searched(clinic, "Patient", [], clinic.admin)}
    assert str(clinic.stranger) in admin_sees
    assert [f["id"] for f in _searched(clinic, "Flag", [])] == [str(mine)]
    devices = {d["serialNumber"] for d in _searched(clinic, "Device", [])}
    assert devices == {"BP-F1", "SC-F1", "GL-F1", "SC-F2"}
    page = _get(clinic, "/fhir/Patient", _count=1).json()
    assert len(check_searchset(page, "Patient")) == 1
    (next_link,) = [lk["url"] for lk in page["link"] if lk["relation"] == "next"]
    assert check_searchset(_get(clinic, next_link).json(), "Patient")[0]["id"] == str(
        clinic.neighbour
    )
    # Another team's: not there, as for none at all; the try audited.
    stranger_device = _device_id(clinic, "SC-F9")
    for path, says in [
        (f"/fhir/Patient/{clinic.stranger}", "no Patient with id"),
        (f"/fhir/Device/{stranger_device}", "no Device with id"),
        ("/fhir/Flag/999999", "no Flag with id"),
        ("/fhir/Observation/wt-999-1", "no Observation with id"),
        ("/fhir/Observation/not-an-id", "no Observation with id"),
    ]:
        _outcome(clinic.client.get(path, headers=clinic.nurse), 404, says)
    theirs = {"patient": clinic.stranger}
    response = clinic.client.get("/fhir/Device", params=theirs, headers=clinic.nurse)
    _outcome(response, 404, "no patient with id")
    audit = _fhir_audit(clinic)
    assert ("denied", "patient", str(clinic.stranger), clinic.stranger, 404) in audit
    assert ("denied", "device", str(stranger_device), clinic.stranger, 404) in audit
    assert ("read", "fhir_flags", None, clinic.neighbour, 200) in audit
    assert ("read", "fhir_patients", None, clinic.patient, 200) in audit


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        ("GET", "/fhir/Encounter", 404, "rpm serves Device, Flag, Observation, Patient"),
        ("GET", "/fhir/Encounter/1", 404, "/fhir/Encounter/1 is not here"),
        ("GET", "/fhir", 404, "is not here"),
        ("GET", "/fhir/Patient/1/_history", 405, "read-only"),
        ("POST", "/fhir/Observation", 405, "POST /fhir/Observation is not supported"),
        ("DELETE", "/fhir/Patient/1", 405, "read-only"),
        ("GET", "/fhir/Patient?gender=female", 400, "not supported here: gender"),
        ("GET", "/fhir/Flag?_cursor=x", 400, "`next` link"),
    ],
)
def test_every_refusal_under_fhir_is_an_operation_outcome(
    clinic: Clinic, method: str, path: str, status: int, says: str
) -> None:
    _outcome(clinic.client.request(method, path, headers=clinic.nurse), status, says)


def test_not_signed_in_is_an_outcome_too(clinic: Clinic) -> None:
    for path in ("/fhir/Patient", "/fhir/Flag/1", "/fhir/Device"):
        response = clinic.client.get(path)
        _outcome(response, 401, "")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_reading_stored_later_is_last_updated_later(clinic: Clinic) -> None:
    """_lastUpdated of an Observation is when rpm received it: what an EHR polls on."""
    horizon = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _searched(clinic, "Observation", [], patient=clinic.patient,
                     _lastUpdated=f"gt{horizon}") == []  # fmt: skip
