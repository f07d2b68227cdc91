"""What every resource rpm serves must be, for the unit and the integration tests alike:
valid to `fhir.resources`' R4B models, and the shape they cannot check (FHIR's
invariants and value sets are beyond pydantic: it takes any `status` string)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

# FHIR R4's id: https://hl7.org/fhir/R4/datatypes.html#id
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
UCUM_UNITS = {"mm[Hg]", "/min", "kg", "mg/dL"}
LOINC_CODES = {"85354-9", "8867-4", "29463-7", "41653-7"}


def check_observation(resource: dict[str, Any]) -> Observation:
    """The resource as `fhir.resources` reads it, once it has passed every check."""
    observation = Observation.model_validate(resource)
    assert FHIR_ID.fullmatch(resource["id"]), resource["id"]
    (identifier,) = resource["identifier"]
    assert identifier["system"] == "urn:ietf:rfc:3986"
    assert uuid.UUID(identifier["value"].removeprefix("urn:uuid:")).version == 5
    check_meta(resource)
    assert resource["meta"]["versionId"] == "1"
    assert resource["status"] == "final"
    (category,) = resource["category"]
    assert category["coding"][0]["code"] == "vital-signs"
    assert category["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/observation-category"
    )
    (coding,) = resource["code"]["coding"]
    assert coding["system"] == "http://loinc.org"
    assert coding["code"] in LOINC_CODES
    assert coding["display"]
    assert re.fullmatch(r"Patient/[0-9]+", resource["subject"]["reference"])
    assert re.fullmatch(r"Device/[0-9]+", resource["device"]["reference"])
    # A dateTime with its time must have its zone too: it names an instant.
    assert datetime.fromisoformat(resource["effectiveDateTime"]).tzinfo is not None
    assert datetime.fromisoformat(resource["issued"]).tzinfo is not None
    if coding["code"] == "85354-9":
        # The vital-signs blood-pressure profile: no value of its own, both components.
        assert "valueQuantity" not in resource
        codes = [c["code"]["coding"][0]["code"] for c in resource["component"]]
        assert codes == ["8480-6", "8462-4"]
        for component in resource["component"]:
            check_quantity(component["valueQuantity"], "mm[Hg]")
    else:
        unit = {"8867-4": "/min", "29463-7": "kg", "41653-7": "mg/dL"}[coding["code"]]
        check_quantity(resource["valueQuantity"], unit)
        if coding["code"] == "41653-7" and "component" in resource:
            # Its meal context, coded as the HL7 PHD IG codes it (MDC_CTXT_GLU_MEAL).
            (meal,) = resource["component"]
            assert meal["code"]["coding"] == [
                {"system": MDC, "code": "8417864", "display": "MDC_CTXT_GLU_MEAL"}
            ]
            (value,) = meal["valueCodeableConcept"]["coding"]
            assert value["system"] == MDC
            assert value["code"] in MEAL_CODES
        else:
            assert "component" not in resource
    return observation


MDC = "urn:iso:std:iso:11073:10101"
MEAL_CODES = {"8417868", "8417872", "8417876", "8417880", "8417908"}


def check_meta(resource: dict[str, Any]) -> None:
    assert FHIR_ID.fullmatch(resource["meta"]["versionId"])
    assert datetime.fromisoformat(resource["meta"]["lastUpdated"]).tzinfo is not None


def check_patient(resource: dict[str, Any]) -> Patient:
    patient = Patient.model_validate(resource)
    assert re.fullmatch(r"[0-9]+", resource["id"])
    check_meta(resource)
    (identifier,) = resource["identifier"]
    assert identifier["type"]["coding"][0]["code"] == "MR"
    assert identifier["value"]
    return patient


def check_device(resource: dict[str, Any]) -> Device:
    device = Device.model_validate(resource)
    assert re.fullmatch(r"[0-9]+", resource["id"])
    check_meta(resource)
    assert resource["status"] in {"active", "inactive"}
    assert resource["serialNumber"]
    if "patient" in resource:
        assert re.fullmatch(r"Patient/[0-9]+", resource["patient"]["reference"])
    return device


def check_flag(resource: dict[str, Any]) -> Flag:
    flag = Flag.model_validate(resource)
    assert re.fullmatch(r"[0-9]+", resource["id"])
    check_meta(resource)
    assert resource["status"] in {"active", "inactive"}
    (priority,) = resource["extension"]
    assert priority["url"] == "http://hl7.org/fhir/StructureDefinition/flag-priority"
    assert priority["valueCodeableConcept"]["coding"][0]["code"] in {"PL", "PM", "PH"}
    assert re.fullmatch(r"Patient/[0-9]+", resource["subject"]["reference"])
    assert ("end" in resource["period"]) == (resource["status"] == "inactive")
    return flag


CHECKS = {
    "Observation": check_observation,
    "Patient": check_patient,
    "Device": check_device,
    "Flag": check_flag,
    "CapabilityStatement": CapabilityStatement.model_validate,
}


def check_resource(resource: dict[str, Any]) -> None:
    CHECKS[resource["resourceType"]](resource)


def check_quantity(quantity: dict[str, Any], ucum: str) -> None:
    assert quantity["system"] == "http://unitsofmeasure.org"
    assert quantity["code"] == ucum
    assert isinstance(quantity["value"], int | float)
    assert quantity["value"] > 0


def check_searchset(body: dict[str, Any], of: str = "Observation") -> list[dict[str, Any]]:
    """The searchset Bundle's matches (of type `of`), once the Bundle and each resource in
    it are valid; the included ones follow the matches."""
    Bundle.model_validate(body)
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    assert [link["relation"] for link in body["link"]][:1] == ["self"]
    resources = []
    modes = [entry["search"]["mode"] for entry in body.get("entry", [])]
    assert modes == sorted(modes, key=["match", "include"].index)
    for entry in body.get("entry", []):
        resource = entry["resource"]
        if entry["search"] == {"mode": "match"}:
            assert resource["resourceType"] == of
            resources.append(resource)
        else:
            assert entry["search"] == {"mode": "include"}
        assert entry["fullUrl"].endswith(f"/fhir/{resource['resourceType']}/{resource['id']}")
        check_resource(resource)
    return resources


def included(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in body.get("entry", []) if e["search"]["mode"] == "include"]
