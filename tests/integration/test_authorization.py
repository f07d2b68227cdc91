"""Who may call what: one table of endpoint x role drives the tests of every /api/v1 route.

Four users, one per role. The nurse and the care manager are members of care team A; the
admin and the integration (an API key) see every patient. Each route that names a
patient, an alert or a care team is tried on one of team A's (`own`) and one of team B's
(`other`): another team's is 404 to a nurse or care manager, as if it did not exist,
never data. A route a role may not call is 403 whoever it names, and 401 without a
credential. "Allowed" means anything else: the route ran, and may still refuse on the
merits (409, 422), which its own tests check.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from rpm.rules.templates import plan_from_templates
from tests.conftest import DatabaseFactory
from tests.smart_keys import ClientKey
from tests.support import (
    TEST_PASSWORD,
    MosquittoProcess,
    add_user,
    bearer,
    wait_until_ready,
    wiring,
)

ROLES = {"N": "nurse", "C": "care_manager", "A": "admin", "I": "integration"}
ANYONE_SIGNED_IN = "NCAI"

# Routes not behind a user's sign-in, and what guards them instead.
NOT_SIGNED_IN = {
    ("POST", "/api/v1/auth/token"): "it is the sign-in",
    ("POST", "/api/v1/twilio/status"): "Twilio's signature (tests/integration/test_sms.py)",
    ("POST", "/api/v1/twilio/inbound"): "Twilio's signature (tests/integration/test_sms.py)",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # The roles (letters of ROLES) that may call it.
    allowed: str
    body: dict[str, Any] | None = None
    # Names a patient, alert or care team: tried on team A's and on team B's.
    scoped: bool = False
    # Sign in afresh for this call (it ends the session it is called with).
    fresh_session: bool = False
    query: dict[str, str] = field(default_factory=dict)


SINCE = datetime(2026, 1, 1, tzinfo=UTC)
PLAN = plan_from_templates(["hypertension"]).model_dump(mode="json")

TABLE = [
    Route("GET", "/api/v1/auth/me", ANYONE_SIGNED_IN),
    Route("POST", "/api/v1/auth/sign-out", ANYONE_SIGNED_IN, fresh_session=True),
    # One's own settings: anyone signed in, for themselves.
    Route("PATCH", "/api/v1/users/me", ANYONE_SIGNED_IN, {"time_zone": "America/Chicago"}),
    # Users, keys and the audit trail: admins only.
    Route("POST", "/api/v1/users", "A",
          {"username": "{unique}", "role": "nurse", "password": TEST_PASSWORD}),
    Route("GET", "/api/v1/users", "A"),
    Route("GET", "/api/v1/users/{user}", "A"),
    Route("PATCH", "/api/v1/users/{user}", "A", {"active": True}),
    Route("POST", "/api/v1/users/{user}/api-keys", "A", {"name": "{unique}"}),
    Route("GET", "/api/v1/users/{user}/api-keys", "A"),
    Route("POST", "/api/v1/api-keys/{spare_key}/revoke", "A"),
    Route("GET", "/api/v1/audit", "A"),
    # Devices: admins only.
    Route("GET", "/api/v1/devices", "A"),
    Route("POST", "/api/v1/devices", "A", {"serial": "{unique}", "kind": "blood_pressure_cuff"}),
    Route("GET", "/api/v1/devices/{serial}", "A"),
    Route("GET", "/api/v1/devices/{serial}/assignments", "A"),
    Route("POST", "/api/v1/devices/{serial}/assign", "A", {"patient_id": "{patient}"}),
    Route("POST", "/api/v1/devices/{serial}/unassign", "A", {}),
    Route("POST", "/api/v1/devices/{serial}/rotate-secret", "A"),
    Route("POST", "/api/v1/devices/{spare_serial}/deactivate", "A"),
    # Patients: every role reads (its own teams'); care managers (into their own teams)
    # and admins enrol and move.
    Route("POST", "/api/v1/patients", "CA",
          {"external_ref": "{unique}", "given_name": "Test", "family_name": "Patient",
           "time_zone": "Europe/Paris", "care_team_id": "{own_team}"}),
    Route("GET", "/api/v1/patients", ANYONE_SIGNED_IN),
    Route("GET", "/api/v1/patients/{patient}", ANYONE_SIGNED_IN, scoped=True),
    Route("GET", "/api/v1/patients/{patient}/alerts", ANYONE_SIGNED_IN, scoped=True),
    Route("PUT", "/api/v1/patients/{patient}/care-team", "CA",
          {"care_team_id": "{team}"}, scoped=True),
    Route("PUT", "/api/v1/patients/{patient}/status", "CA",
          {"status": "active", "reason": "back home"}, scoped=True),
    Route("GET", "/api/v1/patients/{patient}/readings", ANYONE_SIGNED_IN, scoped=True),
    Route("GET", "/api/v1/patients/{patient}/readings/series", ANYONE_SIGNED_IN, scoped=True,
          query={"kind": "blood_pressure", "since": SINCE.isoformat(),
                 "until": (SINCE + timedelta(days=7)).isoformat()}),
    Route("POST", "/api/v1/exports/observations", ANYONE_SIGNED_IN,
          {"patient_ids": ["{patient}"], "start": SINCE.isoformat(),
           "end": (SINCE + timedelta(days=7)).isoformat()}, scoped=True),
    # Care plans: every role reads; only care managers change or try them.
    Route("GET", "/api/v1/care-plan-templates", ANYONE_SIGNED_IN),
    Route("GET", "/api/v1/patients/{patient}/care-plan", ANYONE_SIGNED_IN, scoped=True),
    Route("PUT", "/api/v1/patients/{patient}/care-plan", "C",
          {"plan": PLAN, "reason": "titration", "based_on_version": None}, scoped=True),
    Route("GET", "/api/v1/patients/{patient}/care-plan/versions", ANYONE_SIGNED_IN, scoped=True),
    Route("GET", "/api/v1/patients/{patient}/care-plan/versions/1", ANYONE_SIGNED_IN,
          scoped=True),
    Route("GET", "/api/v1/patients/{patient}/care-plan/diff", ANYONE_SIGNED_IN, scoped=True,
          query={"from": "1", "to": "1"}),
    Route("POST", "/api/v1/patients/{patient}/care-plan/dry-run", "C", {"plan": PLAN},
          scoped=True),
    Route("GET", "/api/v1/patients/{patient}/care-plan/outcomes", ANYONE_SIGNED_IN,
          scoped=True),
    # Care teams: clinicians read their own; admins create them; care managers run
    # their own teams' members and rota, admins every team's.
    Route("POST", "/api/v1/staff", "CA",
          {"username": "{unique}", "display_name": "Test Nurse", "role": "nurse"}),
    Route("GET", "/api/v1/staff", "NCA"),
    Route("POST", "/api/v1/care-teams", "A", {"name": "{unique}"}),
    Route("GET", "/api/v1/care-teams", "NCA"),
    Route("GET", "/api/v1/care-teams/{team}", "NCA", scoped=True),
    Route("PUT", "/api/v1/care-teams/{team}/members/{member}", "CA", scoped=True),
    Route("POST", "/api/v1/care-teams/{team}/shifts", "CA",
          {"staff_id": "{member}", "tier": 1, "starts_at": SINCE.isoformat(),
           "ends_at": (SINCE + timedelta(hours=8)).isoformat()}, scoped=True),
    Route("GET", "/api/v1/care-teams/{team}/shifts", "NCA", scoped=True),
    # A shift under way: the first call ends it now, later ones are refused as over (409).
    Route("DELETE", "/api/v1/care-teams/{team}/shifts/{shift}", "CA", scoped=True),
    # Alerts: every role reads its own teams'; clinicians act.
    Route("GET", "/api/v1/alerts", ANYONE_SIGNED_IN),
    Route("GET", "/api/v1/alerts/{alert}", ANYONE_SIGNED_IN, scoped=True),
    Route("POST", "/api/v1/alerts/{alert}/acknowledge", "NC", {"note": ""}, scoped=True),
    Route("POST", "/api/v1/alerts/{alert}/assign", "NC", {"staff_id": "{staff}"}, scoped=True),
    Route("POST", "/api/v1/alerts/{alert}/resolve", "NC",
          {"outcome": "no_action_needed", "note": "reviewed"}, scoped=True),
    # Program operations: every role reads its own teams' patients' adherence, billing and
    # time; clinicians log time (as their staff record); care managers and admins read
    # the program's reports and record a patient's consent to reminders.
    Route("GET", "/api/v1/patients/{patient}/adherence", ANYONE_SIGNED_IN, scoped=True),
    Route("GET", "/api/v1/adherence/at-risk", ANYONE_SIGNED_IN),
    Route("GET", "/api/v1/patients/{patient}/billing", ANYONE_SIGNED_IN, scoped=True),
    Route("GET", "/api/v1/patients/{patient}/time-logs", ANYONE_SIGNED_IN, scoped=True),
    Route("POST", "/api/v1/patients/{patient}/time-logs", "NC",
          {"minutes": 5, "interactive": True, "note": "call"}, scoped=True),
    Route("POST", "/api/v1/patients/{patient}/time-logs/stopwatch", "NC", {}, scoped=True),
    Route("POST", "/api/v1/patients/{patient}/time-logs/{time_log}/stop", "NC", {},
          scoped=True),
    Route("POST", "/api/v1/patients/{patient}/time-logs/{time_log}/void", "NC",
          {"reason": "entered twice"}, scoped=True),
    Route("GET", "/api/v1/reports/time", "CA", query={"month": "2026-11"}),
    Route("GET", "/api/v1/reports/time.csv", "CA", query={"month": "2026-11"}),
    Route("GET", "/api/v1/patients/{patient}/reminders", ANYONE_SIGNED_IN, scoped=True),
    Route("PUT", "/api/v1/patients/{patient}/reminders", "CA", {"opted_in": False},
          scoped=True),
    # Hand-offs: every role reads notes and a team's huddle board; the care team (whose
    # staff records sign them) writes notes and gives the follow-up.
    Route("POST", "/api/v1/patients/{patient}/notes", "NC", {"body": "handed over"},
          scoped=True),
    Route("GET", "/api/v1/patients/{patient}/notes", ANYONE_SIGNED_IN, scoped=True),
    Route("PUT", "/api/v1/patients/{patient}/follow-up", "NC", {"staff_id": None},
          scoped=True),
    Route("GET", "/api/v1/care-teams/{team}/huddle", ANYONE_SIGNED_IN, scoped=True),
    # SMART Backend Services clients (the EHR's bulk pull): admins only.
    Route("POST", "/api/v1/smart-clients", "A",
          {"name": "{unique}", "jwks": {"keys": []}, "scopes": ["system/*.read"]}),
    Route("GET", "/api/v1/smart-clients", "A"),
    Route("PATCH", "/api/v1/smart-clients/{smart_client}", "A", {"active": True}),
    # Rejected messages: admins only.
    Route("GET", "/api/v1/dead-letters", "A"),
    Route("GET", "/api/v1/dead-letters/{dead_letter}", "A"),
    Route("POST", "/api/v1/dead-letters/{dead_letter}/replay", "A"),
    Route("POST", "/api/v1/dead-letters/replay", "A", {"ids": ["{dead_letter}"]}),
    # EHR feeds: admins only.
    Route("POST", "/api/v1/ehr/endpoints", "A",
          {"name": "{unique}", "base_url": "https://ehr.example.org/fhir/R4",
           "patient_identifier_system": "urn:oid:2.16.840.1.113883.19.5"}),
    Route("GET", "/api/v1/ehr/endpoints", "A"),
    Route("PATCH", "/api/v1/ehr/endpoints/1", "A", {"active": True}),
    Route("GET", "/api/v1/ehr/pushes", "A"),
    Route("POST", "/api/v1/ehr/pushes/retry", "A", {"endpoint_id": 1}),
]  # fmt: skip


@dataclass
class World:
    client: TestClient
    database_url: str
    headers: dict[str, dict[str, str]]  # role letter -> Authorization header
    ids: dict[str, Any]
    serial: Iterator[int] = field(default_factory=itertools.count)

    def fill(self, template: Any, variant: str) -> Any:
        """The route's placeholders with this world's ids; `variant` picks team A's or
        team B's patient, alert and team."""
        if isinstance(template, dict):
            return {key: self.fill(value, variant) for key, value in template.items()}
        if isinstance(template, list):
            return [self.fill(value, variant) for value in template]
        if not isinstance(template, str) or "{" not in template:
            return template
        values = {**self.ids, **self.ids[variant], "unique": f"authz-{next(self.serial)}"}
        if template.startswith("{") and template.endswith("}") and template.count("{") == 1:
            return values[template[1:-1]]  # a whole value keeps its type (an id is a number)
        return template.format(**values)


@pytest.fixture(scope="module")
def world(
    database_factory: DatabaseFactory,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    database_url = database_factory.create(template=template_database)
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n",
                              Path(tmp_path_factory.mktemp("broker")))  # fmt: skip
    broker.start()
    fatal: list[str] = []
    try:
        app = create_app(wiring(database_url, BrokerAddress("127.0.0.1", broker.port), fatal))
        with TestClient(app) as client:
            wait_until_ready(client)
            yield _populate(client, database_url)
    finally:
        broker.stop()
        database_factory.drop(database_url)
    assert fatal == []


def _populate(client: TestClient, database_url: str) -> World:
    add_user(database_url, "authz-admin", "admin", TEST_PASSWORD)
    admin = bearer(client, "authz-admin", TEST_PASSWORD)

    def call(method: str, path: str, body: object = None) -> Any:
        response = client.request(method, path, json=body, headers=admin)
        assert response.status_code in (200, 201), response.text
        return response.json()

    teams = [call("POST", "/api/v1/care-teams", {"name": name})["id"] for name in "AB"]
    nurse, manager = (
        call("POST", "/api/v1/staff", {"username": name, "display_name": name, "role": role})["id"]
        for name, role in (("authz-nurse", "nurse"), ("authz-manager", "care_manager"))
    )
    for staff_id in (nurse, manager):
        call("PUT", f"/api/v1/care-teams/{teams[0]}/members/{staff_id}")
    ids: dict[str, Any] = {"own_team": teams[0], "staff": nurse}
    physician = call(
        "POST", "/api/v1/staff",
        {"username": "authz-physician", "display_name": "Test Physician", "role": "physician"},
    )["id"]  # fmt: skip
    call("PUT", f"/api/v1/care-teams/{teams[1]}/members/{physician}")
    for variant, team in zip(("own", "other"), teams, strict=True):
        patient = call(
            "POST",
            "/api/v1/patients",
            {"external_ref": f"authz-{variant}", "given_name": "Test", "family_name": "Patient",
             "time_zone": "UTC", "templates": ["hypertension"], "care_team_id": team},
        )["id"]  # fmt: skip
        ids[variant] = {
            "patient": patient,
            "team": team,
            "alert": _alert(database_url, patient),
            "time_log": _time_log(database_url, patient, nurse),
            # A member already: adding them again changes nobody's access.
            "member": nurse if variant == "own" else physician,
        }
        ids[variant]["shift"] = _shift_under_way(database_url, team, ids[variant]["member"])
    ids["serial"] = call(
        "POST", "/api/v1/devices", {"serial": "authz-bp", "kind": "blood_pressure_cuff"}
    )["serial"]
    ids["spare_serial"] = call(
        "POST", "/api/v1/devices", {"serial": "authz-spare", "kind": "blood_pressure_cuff"}
    )["serial"]
    ids["dead_letter"] = _dead_letter(database_url)

    integration = add_user(database_url, "authz-feed", "integration", None)
    key = call("POST", f"/api/v1/users/{integration}/api-keys", {"name": "feed"})["key"]
    ids["spare_key"] = call("POST", f"/api/v1/users/{integration}/api-keys", {"name": "spare"})[
        "api_key"
    ]["id"]
    ids["user"] = integration
    ids["smart_client"] = call(
        "POST", "/api/v1/smart-clients",
        {"name": "authz-ehr", "jwks": ClientKey("ES384").jwks, "scopes": ["system/*.read"]},
    )["client_id"]  # fmt: skip
    add_user(database_url, "authz-nurse", "nurse", TEST_PASSWORD, nurse)
    add_user(database_url, "authz-manager", "care_manager", TEST_PASSWORD, manager)
    headers = {
        "N": bearer(client, "authz-nurse", TEST_PASSWORD),
        "C": bearer(client, "authz-manager", TEST_PASSWORD),
        "A": admin,
        "I": {"Authorization": f"Bearer {key}"},
    }
    return World(client, database_url, headers, ids)


def _alert(database_url: str, patient_id: int) -> int:
    """An open alert, as the rule engine opens it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
            " latest_message, first_triggered_at, last_triggered_at)"
            " VALUES (%s, 'bp_crisis', 1, 'critical', 'm', 'm', now(), now()) RETURNING id",
            [patient_id],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _time_log(database_url: str, patient_id: int, staff_id: int) -> int:
    """Ten minutes logged yesterday (stopping it is refused with 409, as stopping time
    that is not running is; the table checks who may try)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO time_log (patient_id, staff_id, staff_role, started_at, ended_at,"
            " created_by) SELECT %s, %s, 'nurse', at, at + interval '10 minutes', 'authz-nurse'"
            " FROM (SELECT now() - interval '1 day' - %s * interval '1 hour' AS at) t"
            " RETURNING id",
            [patient_id, staff_id, patient_id],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _shift_under_way(database_url: str, team_id: int, staff_id: int) -> int:
    """A backup-tier shift from yesterday to next year (clear of the tier-1 one the table
    adds)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO on_call_shift (care_team_id, staff_id, tier, starts_at, ends_at)"
            " VALUES (%s, %s, 2, now() - interval '1 day', now() + interval '1 year')"
            " RETURNING id",
            [team_id, staff_id],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _dead_letter(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO rejected_message (received_at, source, topic, device_serial, payload,"
            " reason, detail) VALUES (now(), 'mqtt', 'rpm/devices/authz-bp/readings',"
            " 'authz-bp', '{', 'malformed_json', 'test') RETURNING id"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _cases() -> Iterator[Any]:
    for route in TABLE:
        for variant in ("own", "other") if route.scoped else ("own",):
            for role in ROLES:
                name = f"{route.method} {route.path}{' (other team)' * (variant == 'other')}"
                yield pytest.param(route, variant, role, id=f"{name} as {ROLES[role]}")


def _expected(route: Route, variant: str, role: str) -> int | None:
    """The refusal this role gets here; None: allowed."""
    if role not in route.allowed:
        return 403
    if variant == "other" and role in "NC":
        return 404
    return None


def _call(world: World, route: Route, variant: str, headers: dict[str, str]) -> Any:
    return world.client.request(
        route.method,
        world.fill(route.path, variant),
        params=route.query,
        json=world.fill(route.body, variant),
        headers=headers,
    )


@pytest.mark.parametrize(("route", "variant", "role"), list(_cases()))
def test_the_role_table(world: World, route: Route, variant: str, role: str) -> None:
    headers = world.headers[role]
    if route.fresh_session and role != "I":
        username = {"N": "authz-nurse", "C": "authz-manager", "A": "authz-admin"}[role]
        headers = bearer(world.client, username, TEST_PASSWORD)
    response = _call(world, route, variant, headers)
    expected = _expected(route, variant, role)
    if expected is None:
        assert response.status_code not in (401, 403, 404), response.text
        assert response.status_code < 500, response.text
    else:
        assert response.status_code == expected, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        # Nothing of the patient's: the refusal's words only.
        assert set(body) <= {"type", "title", "status", "detail", "instance"}, body


@pytest.mark.parametrize("route", TABLE, ids=lambda r: f"{r.method} {r.path}")
def test_without_a_credential_every_route_is_401(world: World, route: Route) -> None:
    response = _call(world, route, "own", {})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


def test_every_api_route_is_in_the_table(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    served = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
    }
    normalised = {(method, _placeholders(path)) for method, path in served}
    assert normalised - {(r.method, _placeholders(r.path)) for r in TABLE} == {
        (method, _placeholders(path)) for method, path in NOT_SIGNED_IN
    }


def _placeholders(path: str) -> str:
    """The path with every `{name}` (and a literal version number) as `{}`."""
    parts = ["{}" if part.startswith("{") or part.isdigit() else part for part in path.split("/")]
    return "/".join(parts)


def test_reads_of_patient_data_are_audited_and_refusals_too(world: World) -> None:
    """Every read of a patient's data leaves a row naming the user, the patient and where
    from; trying another team's patient leaves a `denied` row."""
    reads = [r for r in TABLE if r.method == "GET" and r.scoped and "{patient}" in r.path]
    for route in reads:
        before = _audit_rows(world, "authz-nurse")
        assert _call(world, route, "own", world.headers["N"]).status_code == 200
        (row,) = _audit_rows(world, "authz-nurse")[len(before) :]
        assert row[:3] == ("read", world.ids["own"]["patient"], "nurse"), route.path
        assert row[3] == world.fill(route.path, "own")

        assert _call(world, route, "other", world.headers["N"]).status_code == 404
        denied = _audit_rows(world, "authz-nurse")[-1]
        assert denied[:2] == ("denied", world.ids["other"]["patient"]), route.path


def _audit_rows(world: World, username: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(world.database_url) as conn:
        return conn.execute(
            "SELECT action, patient_id, role, path FROM audit_event WHERE username = %s"
            " ORDER BY id",
            [username],
        ).fetchall()


def test_the_worklist_and_patient_list_hold_only_the_teams_patients(world: World) -> None:
    own, other = world.ids["own"]["patient"], world.ids["other"]["patient"]
    for role, sees in (("N", {own}), ("C", {own}), ("A", {own, other}), ("I", {own, other})):
        listed = world.client.get("/api/v1/patients", headers=world.headers[role]).json()
        assert {p["id"] for p in listed} & {own, other} == sees, role
        worklist = world.client.get("/api/v1/alerts", headers=world.headers[role]).json()
        assert {a["patient_id"] for a in worklist["alerts"]} <= {own, other}
        assert {a["patient_id"] for a in worklist["alerts"]} & {other} == sees - {own}, role
    # Asking for another team's worklist by name is refused, not answered empty.
    response = world.client.get(
        "/api/v1/alerts",
        params={"care_team_id": world.ids["other"]["team"]},
        headers=world.headers["N"],
    )
    assert response.status_code == 404


def test_a_care_manager_enrols_into_their_own_teams_only(world: World) -> None:
    body = {"external_ref": "authz-elsewhere", "given_name": "Test", "family_name": "Patient",
            "time_zone": "UTC"}  # fmt: skip
    for care_team_id in (world.ids["other"]["team"], None):
        response = world.client.post(
            "/api/v1/patients", json={**body, "care_team_id": care_team_id},
            headers=world.headers["C"],
        )  # fmt: skip
        assert response.status_code == 403, response.text
        assert "their own care teams" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field_name"),
    [
        ("/api/v1/patients", {"status": "discharged"}, "status"),
        ("/api/v1/alerts/{alert}/resolve", {"actor": "someone-else"}, "actor"),
        ("/api/v1/patients/{patient}/care-plan/dry-run", {"version": 7}, "version"),
    ],
)
def test_a_body_cannot_set_a_field_the_route_does_not_offer(
    world: World, path: str, body: dict[str, Any], field_name: str
) -> None:
    """No mass assignment: an unknown field is refused by name, not silently ignored."""
    route = next(r for r in TABLE if r.path == path and r.method == "POST")
    response = world.client.post(
        world.fill(path, "own"),
        json={**world.fill(route.body, "own"), **body},
        headers=world.headers["C"],
    )
    assert response.status_code == 422, response.text
    assert field_name in response.json()["detail"]


def test_clinicians_see_their_teams_staff_and_care_team_changes_are_audited(world: World) -> None:
    """A nurse lists her own teams' members only (their phones are no one else's
    business); giving someone a team, which gives their login its patients, is audited,
    as is asking for another team's worklist."""
    elsewhere = world.client.post(
        "/api/v1/staff",
        json={"username": "authz-elsewhere", "display_name": "Test Nurse", "role": "nurse"},
        headers=world.headers["A"],
    ).json()["id"]
    member = f"/api/v1/care-teams/{world.ids['other']['team']}/members/{elsewhere}"
    assert world.client.put(member, headers=world.headers["A"]).status_code == 200
    staff = world.client.get("/api/v1/staff", headers=world.headers["N"]).json()
    assert {s["username"] for s in staff} == {"authz-nurse", "authz-manager"}
    everyone = world.client.get("/api/v1/staff", headers=world.headers["A"]).json()
    assert "authz-elsewhere" in {s["username"] for s in everyone}

    team, nurse = world.ids["own_team"], world.ids["staff"]
    path = f"/api/v1/care-teams/{team}/members/{nurse}"
    assert world.client.put(path, headers=world.headers["A"]).status_code == 200
    other = world.ids["other"]["team"]
    refused = world.client.get(
        "/api/v1/alerts", params={"care_team_id": other}, headers=world.headers["N"]
    )
    assert refused.status_code == 404
    with psycopg.connect(world.database_url) as conn:
        rows = conn.execute(
            "SELECT username, action, resource, resource_id, details FROM audit_event"
            " WHERE resource = 'care_team' AND action IN ('add_member', 'denied')"
            " ORDER BY id DESC LIMIT 2"
        ).fetchall()
    assert rows == [
        ("authz-nurse", "denied", "care_team", str(other), {}),
        ("authz-admin", "add_member", "care_team", str(team), {"staff_id": nurse}),
    ]


def test_signing_out_is_audited(world: World) -> None:
    headers = bearer(world.client, "authz-manager", TEST_PASSWORD)
    assert world.client.post("/api/v1/auth/sign-out", headers=headers).status_code == 204
    assert world.client.get("/api/v1/auth/me", headers=headers).status_code == 401
    with psycopg.connect(world.database_url) as conn:
        row = conn.execute(
            "SELECT action, resource FROM audit_event WHERE username = 'authz-manager'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row == ("sign_out", "session")
