"""The enrolled patient, the device registry and open alerts as FHIR R4 Patient, Device
and Flag resources, with the version (`meta`) a read's ETag and Last-Modified come from.
Pure: plain rows in, plain JSON out (docs/fhir.md).

An alert is a Flag, as the HL7 International Patient Summary IG's Flag-alert profile has
it for "information flagged to raise awareness": active while open or acknowledged,
inactive once resolved, its severity the core `flag-priority` extension. (The HL7
Personal Health Device IG's DeviceAlert exists in FHIR R6 only; DetectedIssue is for
issues between clinical actions, such as drug interactions.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from rpm.devices.model import DeviceKind
from rpm.fhir.observations import epoch_micros
from rpm.rules.plan import Severity

_MEDICAL_RECORD_NUMBER = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": "MR",
            "display": "Medical record number",
        }
    ],
    "text": "Medical record number",
}
_FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
_FLAG_PRIORITY = "http://hl7.org/fhir/flag-priority-code"
# An alert's severity as a flag priority: a warning waits its turn, critical is urgent.
_PRIORITY = {
    Severity.WARNING: ("PL", "Low priority"),
    Severity.HIGH: ("PM", "Medium priority"),
    Severity.CRITICAL: ("PH", "High priority"),
}
_DEVICE_TYPE = {
    DeviceKind.BLOOD_PRESSURE_CUFF: "Blood pressure cuff",
    DeviceKind.WEIGHT_SCALE: "Weight scale",
    DeviceKind.GLUCOMETER: "Glucometer",
}


@dataclass(frozen=True)
class PatientRow:
    id: int
    external_ref: str
    given_name: str
    family_name: str
    birth_date: date | None
    status: str
    care_team_id: int | None
    updated_at: datetime


@dataclass(frozen=True)
class DeviceRow:
    id: int
    serial: str
    kind: str
    model: str
    status: str
    firmware: str | None
    # Who has it now (None: in stock), and their care team.
    patient_id: int | None
    care_team_id: int | None
    updated_at: datetime


@dataclass(frozen=True)
class AlertRow:
    id: int
    patient_id: int
    severity: str
    status: str
    message: str
    opened_at: datetime
    resolved_at: datetime | None
    updated_at: datetime


def meta(updated_at: datetime) -> dict[str, str]:
    """A resource's version: its last change, in microseconds since 1970, is its
    versionId (each change makes a new one; the store keeps no history to read)."""
    instant = updated_at.astimezone(UTC)
    return {"versionId": str(epoch_micros(instant)), "lastUpdated": instant.isoformat()}


def etag(resource: dict[str, Any]) -> str:
    """The read's ETag, weak as FHIR has it: W/"<versionId>"."""
    return f'W/"{resource["meta"]["versionId"]}"'


def last_modified(resource: dict[str, Any]) -> str:
    """The read's Last-Modified (an HTTP date, to the second)."""
    return format_datetime(datetime.fromisoformat(resource["meta"]["lastUpdated"]), usegmt=True)


def patient(row: PatientRow) -> dict[str, Any]:
    """The enrolled patient: the clinic's reference (an MRN) is the identifier; a
    discharged patient is no longer active."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(row.id),
        "meta": meta(row.updated_at),
        "identifier": [
            {
                "use": "usual",
                "type": _MEDICAL_RECORD_NUMBER,
                "value": row.external_ref,
            }
        ],
        "active": row.status != "discharged",
        "name": [{"use": "official", "family": row.family_name, "given": [row.given_name]}],
    }
    if row.birth_date is not None:
        resource["birthDate"] = row.birth_date.isoformat()
    return resource


def device(row: DeviceRow) -> dict[str, Any]:
    """The registered device, its serial, and the patient who has it now."""
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": str(row.id),
        "meta": meta(row.updated_at),
        "status": "active" if row.status == "active" else "inactive",
        "serialNumber": row.serial,
        "type": {"text": _DEVICE_TYPE[DeviceKind(row.kind)]},
    }
    if row.model:
        resource["modelNumber"] = row.model
    if row.firmware:
        resource["version"] = [{"type": {"text": "firmware"}, "value": row.firmware}]
    if row.patient_id is not None:
        resource["patient"] = {"reference": f"Patient/{row.patient_id}"}
    return resource


def flag(row: AlertRow) -> dict[str, Any]:
    """The alert: active until resolved, over the period it was open."""
    code, display = _PRIORITY[Severity(row.severity)]
    period = {"start": row.opened_at.astimezone(UTC).isoformat()}
    if row.resolved_at is not None:
        period["end"] = row.resolved_at.astimezone(UTC).isoformat()
    return {
        "resourceType": "Flag",
        "id": str(row.id),
        "meta": meta(row.updated_at),
        "extension": [
            {
                "url": FLAG_PRIORITY_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [{"system": _FLAG_PRIORITY, "code": code, "display": display}],
                    "text": row.severity,
                },
            }
        ],
        "status": "inactive" if row.status == "resolved" else "active",
        "category": [
            {
                "coding": [{"system": _FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}],
                "text": "Clinical",
            }
        ],
        "code": {"text": row.message},
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "period": period,
    }
