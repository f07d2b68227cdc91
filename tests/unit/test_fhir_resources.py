"""Patients, devices and alerts as FHIR Patient, Device and Flag resources, each valid to
fhir.resources' R4B models; and the CapabilityStatement, true to the routes served."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi.routing import APIRoute
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from rpm.api import fhir as fhir_api
from rpm.api import fhir_bulk as fhir_bulk_api
from rpm.fhir import capability, resources
from rpm.fhir.resources import AlertRow, DeviceRow, PatientRow
from tests.fhir_checks import check_device, check_flag, check_patient

CHANGED = datetime(2026, 11, 24, 13, 30, 0, 123456, tzinfo=UTC)
PATIENT = PatientRow(7, "MRN-7", "Ada", "Example", date(1950, 2, 3), "active", 1, CHANGED)


def test_a_patient_with_the_clinics_reference_as_identifier() -> None:
    patient = resources.patient(PATIENT)
    check_patient(patient)
    assert patient["identifier"][0]["value"] == "MRN-7"
    assert patient["name"] == [{"use": "official", "family": "Example", "given": ["Ada"]}]
    assert patient["birthDate"] == "1950-02-03"
    assert patient["active"] is True
    assert patient["meta"] == {
        "versionId": "1795527000123456",
        "lastUpdated": "2026-11-24T13:30:00.123456+00:00",
    }
    discharged = resources.patient(
        PatientRow(**{**vars(PATIENT), "status": "discharged", "birth_date": None})
    )
    check_patient(discharged)
    assert discharged["active"] is False
    assert "birthDate" not in discharged


def test_a_device_with_whoever_has_it_now() -> None:
    row = DeviceRow(
        45, "BP-000123", "blood_pressure_cuff", "UA-651", "active", "1.2", 7, 1, CHANGED
    )
    device = resources.device(row)
    check_device(device)
    assert device["serialNumber"] == "BP-000123"
    assert device["modelNumber"] == "UA-651"
    assert device["patient"] == {"reference": "Patient/7"}
    assert device["version"] == [{"type": {"text": "firmware"}, "value": "1.2"}]
    in_stock = resources.device(
        DeviceRow(46, "SC-1", "weight_scale", "", "inactive", None, None, None, CHANGED)
    )
    check_device(in_stock)
    assert in_stock["status"] == "inactive"
    assert not {"patient", "modelNumber", "version"} & set(in_stock)


def test_an_alert_is_a_flag_active_until_resolved() -> None:
    opened = CHANGED - timedelta(hours=2)
    row = AlertRow(9, 7, "critical", "open", "Systolic 182 mmHg", opened, None, CHANGED)
    flag = resources.flag(row)
    check_flag(flag)
    assert flag["status"] == "active"
    assert flag["code"] == {"text": "Systolic 182 mmHg"}
    assert flag["period"] == {"start": opened.isoformat()}
    assert flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    for severity, code in (("warning", "PL"), ("high", "PM")):
        acknowledged = resources.flag(AlertRow(**{**vars(row), "severity": severity,
                                                  "status": "acknowledged"}))  # fmt: skip
        assert acknowledged["status"] == "active"
        assert acknowledged["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == code
    closed = {"status": "resolved", "resolved_at": CHANGED}
    resolved = resources.flag(AlertRow(**{**vars(row), **closed}))
    check_flag(resolved)
    assert resolved["status"] == "inactive"
    assert resolved["period"]["end"] == CHANGED.isoformat()


def test_a_reads_etag_and_last_modified_are_its_version() -> None:
    patient = resources.patient(PATIENT)
    assert resources.etag(patient) == 'W/"1795527000123456"'
    assert resources.last_modified(patient) == "Tue, 24 Nov 2026 13:30:00 GMT"


def _fhir_routes() -> list[APIRoute]:
    return [r for r in fhir_api.fhir_router.routes if isinstance(r, APIRoute)]


def test_the_capability_statement_is_valid_and_lists_what_the_routes_serve() -> None:
    """Every type it lists has a read and a search route, every route under /fhir is of
    a listed type (or the statement itself, or the catch-all refusal), and each search
    takes exactly the parameters the statement names (with `_count`, `_include`,
    `_sort` and the cursor of `next` links)."""
    statement = capability.capability_statement(
        "http://rpm.example/fhir", "0.1.0", datetime(2026, 12, 1, tzinfo=UTC)
    )
    CapabilityStatement.model_validate(statement)
    (rest,) = statement["rest"]
    listed = {entry["type"]: entry for entry in rest["resource"] if "interaction" in entry}
    paths = {route.path for route in _fhir_routes()}
    served = {path.split("/")[2] for path in paths} - {"metadata", "{path:path}"}
    assert served == set(listed)
    for name, entry in listed.items():
        assert f"/fhir/{name}" in paths
        assert any(p.startswith(f"/fhir/{name}/{{") for p in paths)
        assert [i["code"] for i in entry["interaction"]] == ["read", "search-type"]
        (search_route,) = [r for r in _fhir_routes() if r.path == f"/fhir/{name}"]
        taken = _query_parameters(search_route)
        assert taken == capability.BY_NAME[name].parameters(), name
        named = {p["name"] for p in entry["searchParam"]}
        results = {"_count", "_cursor", "_include", "_sort"}
        assert named == taken - results, name
        assert set(entry.get("searchInclude", [])) == set(capability.BY_NAME[name].includes)
    assert listed["Observation"]["searchInclude"] == ["Observation:patient", "Observation:device"]


def test_the_capability_statement_lists_the_bulk_operations_routed() -> None:
    """Each operation it lists (Patient and Group $export) is a route of the Bulk Data
    router, and each kick-off route is listed; the token URL is the token route's."""
    statement = capability.capability_statement(
        "http://rpm.example/fhir", "0.1.0", datetime(2026, 12, 1, tzinfo=UTC)
    )
    (rest,) = statement["rest"]
    listed = {
        (entry["type"], op["name"], op["definition"])
        for entry in rest["resource"]
        for op in entry.get("operation", [])
    }
    assert listed == {(op.resource_type, op.name, op.definition) for op in capability.OPERATIONS}
    routes = {r.path for r in fhir_bulk_api.bulk_router.routes if isinstance(r, APIRoute)}
    assert {op.path for op in capability.OPERATIONS} == {p for p in routes if "$" in p}
    assert f"/fhir{capability.TOKEN_PATH}" in routes
    (oauth,) = rest["security"]["extension"]
    assert oauth["extension"] == [
        {"url": "token", "valueUri": "http://rpm.example/fhir/auth/token"}
    ]


def _query_parameters(route: APIRoute) -> set[str]:
    """The query parameters a route's handler declares, by the names a client sends."""
    return {field.alias for field in route.dependant.query_params}
