"""Provisioning a simulation in rpm through its public API, as a clinic's staff would:
each simulated patient enrolled with the care-plan templates of their conditions, each
device registered and given to its patient.

Idempotent: a patient or device already there is reused, so a scenario can be
provisioned again before each run. Simulated patients have no names: the external
reference stands in for both (never real data).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from simulators.scenario import SimPatient, Simulation

# Who the changes are made by, in rpm's care-plan history.
USER = "rpm-sim"


class ProvisionError(Exception):
    pass


@dataclass(frozen=True)
class Provisioned:
    patients: dict[str, int]  # external reference -> rpm's patient id
    created_patients: int
    created_devices: int

    def describe(self) -> str:
        return (
            f"provisioned {len(self.patients)} patients ({self.created_patients} new) and their"
            f" devices ({self.created_devices} new)"
        )


def provision(simulation: Simulation, api_url: str, assigned_at: datetime) -> Provisioned:
    """Enrol the simulation's patients and give them their devices from `assigned_at`
    (before the first simulated reading)."""
    api = _Api(api_url.rstrip("/"))
    ids: dict[str, int] = {}
    new_patients = new_devices = 0
    for patient in simulation.patients:
        patient_id, created = _patient(api, patient)
        ids[patient.ref] = patient_id
        new_patients += created
        for device in patient.devices:
            status, body = api.call(
                "POST", "/api/v1/devices", {"serial": device.serial, "kind": device.kind.value}
            )
            if status == 201:
                new_devices += 1
            elif status == 409:
                _, body = api.call("GET", f"/api/v1/devices/{quote(device.serial)}")
            else:
                raise ProvisionError(f"registering {device.serial}: HTTP {status}: {body}")
            if body.get("patient_id") != patient_id:
                status, reply = api.call(
                    "POST",
                    f"/api/v1/devices/{quote(device.serial)}/assign",
                    {"patient_id": patient_id, "at": assigned_at.isoformat()},
                )
                if status != 200:
                    raise ProvisionError(f"assigning {device.serial}: HTTP {status}: {reply}")
    return Provisioned(ids, new_patients, new_devices)


def _patient(api: _Api, patient: SimPatient) -> tuple[int, bool]:
    status, body = api.call(
        "POST",
        "/api/v1/patients",
        {
            "external_ref": patient.ref,
            "given_name": "Simulated",
            "family_name": patient.ref,
            "time_zone": patient.time_zone,
            # The physiology's conditions are named as rpm's care-plan templates are.
            "templates": sorted(c.value for c in patient.conditions),
        },
    )
    if status == 201:
        return int(body["id"]), True
    if status == 409:
        _, found = api.call("GET", f"/api/v1/patients?external_ref={quote(patient.ref)}")
        if found:
            return int(found[0]["id"]), False
    raise ProvisionError(f"enrolling {patient.ref}: HTTP {status}: {body}")


@dataclass(frozen=True)
class _Api:
    base_url: str

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 (the URL is the operator's)
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "X-RPM-User": USER},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                return reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except urllib.error.URLError as exc:
            raise ProvisionError(f"cannot reach rpm at {self.base_url}: {exc.reason}") from None
