"""What every exported Observation must be, for the unit and the integration tests alike:
valid to `fhir.resources`' R4B model, and the vital-signs shape it cannot check (FHIR's
invariants and value sets are beyond pydantic: it takes any `status` string)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

# FHIR R4's id: https://hl7.org/fhir/R4/datatypes.html#id
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
UCUM_UNITS = {"mm[Hg]", "/min", "kg", "mg/dL"}
LOINC_CODES = {"85354-9", "8867-4", "29463-7", "41653-7"}


def check_observation(resource: dict[str, Any]) -> Observation:
    """The resource as `fhir.resources` reads it, once it has passed every check."""
    observation = Observation.model_validate(resource)
    assert FHIR_ID.fullmatch(resource["id"]), resource["id"]
    assert resource["identifier"] == [
        {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{resource['id']}"}
    ]
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
        assert "component" not in resource
        unit = {"8867-4": "/min", "29463-7": "kg", "41653-7": "mg/dL"}[coding["code"]]
        check_quantity(resource["valueQuantity"], unit)
    return observation


def check_quantity(quantity: dict[str, Any], ucum: str) -> None:
    assert quantity["system"] == "http://unitsofmeasure.org"
    assert quantity["code"] == ucum
    assert isinstance(quantity["value"], int | float)
    assert quantity["value"] > 0


def check_searchset(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The searchset Bundle's Observations, once the Bundle and each of them are valid."""
    Bundle.model_validate(body)
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    assert [link["relation"] for link in body["link"]][:1] == ["self"]
    resources = []
    for entry in body.get("entry", []):
        assert entry["search"] == {"mode": "match"}
        assert entry["fullUrl"].endswith(f"/fhir/Observation/{entry['resource']['id']}")
        check_observation(entry["resource"])
        resources.append(entry["resource"])
    return resources
