"""Provisioning a simulation in rpm through its public API, as a clinic's staff would:
each simulated patient enrolled with the care-plan templates of their conditions (and,
if asked, in a care team, named or by id, made if a name is new), each device
registered and given to its patient.

It signs in once (`POST /api/v1/auth/token`) and sends the bearer token; registering
devices and creating a care team need an admin's login. Idempotent: a care team,
patient or device already there is reused, so a scenario can be provisioned again
before each run, and into a fresh deployment. Simulated patients have no names: the
external reference stands in for both (never real data).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from simulators.scenario import SimPatient, Simulation

# Care teams asked for at a time when looking one up by name: the API's largest page.
TEAMS_PAGE = 1000


class ProvisionError(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    """An rpm login; the password is never shown (repr) nor sent anywhere but sign-in."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class CareTeam:
    id: int
    created: bool  # by this run


@dataclass(frozen=True)
class Provisioned:
    patients: dict[str, int]  # external reference -> rpm's patient id
    created_patients: int
    created_devices: int
    care_team: CareTeam | None = None

    def describe(self) -> str:
        team = ""
        if self.care_team is not None:
            made = " (new)" if self.care_team.created else ""
            team = f", in care team {self.care_team.id}{made}"
        return (
            f"provisioned {len(self.patients)} patients ({self.created_patients} new) and their"
            f" devices ({self.created_devices} new){team}"
        )


def provision(
    simulation: Simulation,
    api_url: str,
    assigned_at: datetime,
    credentials: Credentials,
    care_team: str | None = None,
) -> Provisioned:
    """Enrol the simulation's patients (in `care_team`, a team's name or id, if given) and
    give them their devices from `assigned_at` (before the first simulated reading)."""
    api = _Api.signed_in(api_url.rstrip("/"), credentials)
    team = None if care_team is None else _care_team(api, care_team)
    care_team_id = None if team is None else team.id
    ids: dict[str, int] = {}
    new_patients = new_devices = 0
    for patient in simulation.patients:
        patient_id, created = _patient(api, patient, care_team_id, assigned_at)
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
                raise ProvisionError(f"registering {device.serial}: {_refusal(status, body)}")
            if body.get("patient_id") != patient_id:
                status, reply = api.call(
                    "POST",
                    f"/api/v1/devices/{quote(device.serial)}/assign",
                    {"patient_id": patient_id, "at": assigned_at.isoformat()},
                )
                if status != 200:
                    raise ProvisionError(f"assigning {device.serial}: {_refusal(status, reply)}")
    return Provisioned(ids, new_patients, new_devices, team)


def _care_team(api: _Api, wanted: str) -> CareTeam:
    """The care team `wanted` names: digits are its id, which must exist; anything else is
    its name, found among the teams or else created (an admin's right)."""
    if not wanted:
        raise ProvisionError("the care team is empty: give a care team's name or id")
    if wanted.isascii() and wanted.isdigit():
        status, body = api.call("GET", f"/api/v1/care-teams/{int(wanted)}")
        if status != 200:
            raise ProvisionError(f"care team {wanted}: {_refusal(status, body)}")
        return CareTeam(int(wanted), created=False)
    found = _team_named(api, wanted)
    if found is not None:
        return CareTeam(found, created=False)
    status, body = api.call("POST", "/api/v1/care-teams", {"name": wanted})
    if status == 201:
        return CareTeam(int(body["id"]), created=True)
    # 409: another run made it in the meantime (names are unique), so it is there now.
    found = _team_named(api, wanted) if status == 409 else None
    if found is None:
        raise ProvisionError(f"creating care team {wanted!r}: {_refusal(status, body)}")
    return CareTeam(found, created=False)


def _team_named(api: _Api, name: str) -> int | None:
    """The id of the team with this exact name, paging through the teams the login sees."""
    after = 0
    while True:
        status, page = api.call("GET", f"/api/v1/care-teams?after={after}&limit={TEAMS_PAGE}")
        if status != 200 or not isinstance(page, list):
            raise ProvisionError(f"looking for care team {name!r}: {_refusal(status, page)}")
        for team in page:
            if team.get("name") == name:
                return int(team["id"])
        if len(page) < TEAMS_PAGE:
            return None
        after = int(page[-1]["id"])


def _patient(
    api: _Api, patient: SimPatient, care_team_id: int | None, assigned_at: datetime
) -> tuple[int, bool]:
    # Enrolled when their devices were given (before their first simulated reading), so
    # that adherence and billing count the readings; the API takes at most 90 days back.
    enrolled_at = max(assigned_at, datetime.now(UTC) - timedelta(days=89))
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
            "care_team_id": care_team_id,
            "enrolled_at": enrolled_at.isoformat(),
        },
    )
    if status == 201:
        return int(body["id"]), True
    if status != 409:
        raise ProvisionError(f"enrolling {patient.ref}: {_refusal(status, body)}")
    status, found = api.call("GET", f"/api/v1/patients?external_ref={quote(patient.ref)}")
    if status != 200 or not found:
        # A care manager does not see a patient of another team.
        raise ProvisionError(
            f"{patient.ref} is enrolled already, but not visible to this login:"
            f" {_refusal(status, found)}"
        )
    existing = found[0]
    patient_id = int(existing["id"])
    # A patient in no team yet joins this one; one in another team stays there.
    if care_team_id is not None and existing.get("care_team_id") is None:
        status, reply = api.call(
            "PUT", f"/api/v1/patients/{patient_id}/care-team", {"care_team_id": care_team_id}
        )
        if status != 200:
            raise ProvisionError(
                f"putting {patient.ref} in care team {care_team_id}: {_refusal(status, reply)}"
            )
    return patient_id, False


def _refusal(status: int, body: Any) -> str:
    """An HTTP refusal as a line: rpm's problem details say why in `detail`."""
    if isinstance(body, dict) and body.get("detail"):
        return f"HTTP {status}: {body['detail']}"
    return f"HTTP {status}: {body}"


@dataclass(frozen=True)
class _Api:
    base_url: str
    token: str = field(default="", repr=False)

    @classmethod
    def signed_in(cls, base_url: str, credentials: Credentials) -> _Api:
        """Sign in once: a provisioning run takes seconds, the token lasts 15 minutes."""
        status, body = cls(base_url).call(
            "POST",
            "/api/v1/auth/token",
            {"username": credentials.username, "password": credentials.password},
        )
        if status == 200 and isinstance(body, dict) and body.get("access_token"):
            return cls(base_url, str(body["access_token"]))
        if status == 401:
            raise ProvisionError(
                f"rpm refused the sign-in of {credentials.username!r}: check RPM_SIM_USERNAME"
                " and RPM_SIM_PASSWORD"
            )
        raise ProvisionError(f"signing in as {credentials.username!r}: {_refusal(status, body)}")

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(  # noqa: S310 (the URL is the operator's)
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                return reply.status, _json(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except urllib.error.URLError as exc:
            raise ProvisionError(f"cannot reach rpm at {self.base_url}: {exc.reason}") from None


def _json(data: bytes) -> Any:
    """A reply's body; one that is not JSON (a proxy's error page) as its text."""
    try:
        return json.loads(data or b"null")
    except ValueError:
        return data.decode(errors="replace")[:200]
