"""What rpm's FHIR API serves: the one table the router takes its resource types and
search parameters from, and the CapabilityStatement (`GET /fhir/metadata`) written from
it, so that the statement cannot promise what is not served. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

FHIR_VERSION = "4.0.1"


@dataclass(frozen=True)
class SearchParameter:
    name: str
    # FHIR's search parameter type: token, date, reference, ...
    type: str
    documentation: str
    # Its definition among FHIR's own (http://hl7.org/fhir/SearchParameter/...).
    definition: str


@dataclass(frozen=True)
class ResourceType:
    name: str
    documentation: str
    search: tuple[SearchParameter, ...]
    includes: tuple[str, ...] = ()
    # `_sort` values taken (only ascending by date: the order pages are kept in).
    sorts: tuple[str, ...] = ()

    def parameters(self) -> frozenset[str]:
        """Every query parameter its search takes: search parameters, then the result
        parameters (`_count`, `_include`, `_sort`) and the page cursor of `next` links."""
        taken = {p.name for p in self.search} | {"_count", "_cursor"}
        if self.includes:
            taken.add("_include")
        if self.sorts:
            taken.add("_sort")
        return frozenset(taken)


def _common(name: str) -> tuple[SearchParameter, ...]:
    return (
        SearchParameter(
            "_id", "token", "One id or several, comma-separated",
            "http://hl7.org/fhir/SearchParameter/Resource-id",
        ),
        SearchParameter(
            "_lastUpdated", "date",
            f"When the {name} last changed (prefixes as for dates; a date without a time is"
            " on the patient's clock in a patient's search, else in UTC)",
            "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        ),
    )  # fmt: skip


def _patient(definition: str, documentation: str) -> SearchParameter:
    return SearchParameter("patient", "reference", documentation, definition)


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "Observation",
        "A patient's single readings (category vital-signs, LOINC, UCUM), oldest first",
        (
            *_common("Observation"),
            _patient(
                "http://hl7.org/fhir/SearchParameter/clinical-patient",
                "Required: the patient, 123 or Patient/123",
            ),
            SearchParameter(
                "date",
                "date",
                "When measured; repeatable, all must hold (eq, ne, gt, ge, lt, le)",
                "http://hl7.org/fhir/SearchParameter/clinical-date",
            ),
            SearchParameter(
                "code",
                "token",
                "LOINC codes, comma-separated: 8867-4 or http://loinc.org|8867-4",
                "http://hl7.org/fhir/SearchParameter/clinical-code",
            ),
        ),
        includes=("Observation:patient", "Observation:device"),
        sorts=("date",),
    ),
    ResourceType(
        "Patient",
        "The enrolled patients of the user's care teams; the clinic's reference (an MRN)"
        " is the identifier",
        (
            *_common("Patient"),
            SearchParameter(
                "identifier",
                "token",
                "The clinic's reference: MRN-1 or |MRN-1",
                "http://hl7.org/fhir/SearchParameter/Patient-identifier",
            ),
        ),
    ),
    ResourceType(
        "Device",
        "Registered devices, with the patient who has each now",
        (
            *_common("Device"),
            _patient(
                "http://hl7.org/fhir/SearchParameter/Device-patient",
                "The patient who has the device now",
            ),
        ),
    ),
    ResourceType(
        "Flag",
        "Open (and acknowledged) alerts: a search lists those; a resolved alert is read as"
        " an inactive Flag",
        (
            *_common("Flag"),
            _patient("http://hl7.org/fhir/SearchParameter/clinical-patient", "The patient"),
        ),
    ),
)
BY_NAME = {resource.name: resource for resource in RESOURCES}


@dataclass(frozen=True)
class Operation:
    """A FHIR operation served, on a resource type, at a path under /fhir."""

    resource_type: str
    name: str
    definition: str
    path: str


_BULK_DATA = "http://hl7.org/fhir/uv/bulkdata"
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "Patient", "export", f"{_BULK_DATA}/OperationDefinition/patient-export",
        "/fhir/Patient/$export",
    ),
    Operation(
        "Group", "export", f"{_BULK_DATA}/OperationDefinition/group-export",
        "/fhir/Group/{group_id}/$export",
    ),
)  # fmt: skip
# Where a SMART Backend Services client gets its access token, under the FHIR base.
TOKEN_PATH = "/auth/token"  # noqa: S105 (a path, not a secret)
_SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _operations(resource_type: str) -> list[dict[str, str]]:
    return [
        {"name": op.name, "definition": op.definition}
        for op in OPERATIONS
        if op.resource_type == resource_type
    ]


def capability_statement(base: str, version: str, date: datetime) -> dict[str, Any]:
    """rpm's FHIR server as it is: read and search-type of each resource type, each
    search parameter and `_include` of the table."""
    resources = []
    for resource in RESOURCES:
        entry: dict[str, Any] = {
            "type": resource.name,
            "documentation": resource.documentation,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "versioning": "versioned",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [
                {
                    "name": p.name,
                    "definition": p.definition,
                    "type": p.type,
                    "documentation": p.documentation,
                }
                for p in resource.search
            ],
        }
        if resource.includes:
            entry["searchInclude"] = list(resource.includes)
        if operations := _operations(resource.name):
            entry["operation"] = operations
        resources.append(entry)
    # A Group is a care team; only its export is served.
    resources.append(
        {
            "type": "Group",
            "documentation": "A care team, for its patients' Bulk Data export only",
            "operation": _operations("Group"),
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.isoformat(),
        "kind": "instance",
        "software": {"name": "rpm", "version": version},
        "implementation": {"description": "rpm remote patient monitoring", "url": base},
        "instantiates": [f"{_BULK_DATA}/CapabilityStatement/bulk-data"],
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. `_count` pages (at most 1000 a page), `_sort`"
                " takes date (Observation, oldest first), and every refusal is an"
                " OperationOutcome. Bulk Data export (IG v2): Patient/$export and"
                " Group/<care team>/$export, NDJSON of Patient, Observation, Device and Flag.",
                "security": {
                    "extension": [
                        {
                            "url": _SMART_OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": base + TOKEN_PATH}],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "Authorization: Bearer <token or API key>; a user sees"
                    " the patients of their care teams only. $export also takes SMART Backend"
                    " Services access tokens (client_credentials with a signed JWT, scopes"
                    " system/*.read), from the token URL above",
                },
                "resource": resources,
            }
        ],
    }
