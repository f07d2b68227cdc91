"""The served OpenAPI schema against the app itself: schemathesis generates requests for
every /api/v1 operation from `/openapi.json` (valid ones, ones with the seeded ids, the
schema's examples, and invalid ones), sends them to the wired service (real PostgreSQL,
a Mosquitto of its own), and checks that none is a server error and that every reply,
its status, content type, headers and body, is one the schema documents. As an admin,
and as a nurse, who is refused (403) or not shown (404) much of it.

The request bodies' examples, which /docs shows, are checked against their models too.

Generation is derandomized, so a run is repeatable; RPM_SCHEMA_RANDOM=1 draws new cases
each run and RPM_SCHEMA_EXAMPLES=100 sends more of them, for a longer hunt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.failures import FailureGroup

from rpm.api.deps import RequestBody
from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import sign_in_as, wiring

# Cases per operation: the file runs in about half a minute on two cores.
EXAMPLES = int(os.environ.get("RPM_SCHEMA_EXAMPLES", "12"))
RANDOM = os.environ.get("RPM_SCHEMA_RANDOM") == "1"
SIGN_OUT = "/api/v1/auth/sign-out"


def _checks() -> list[Any]:
    from schemathesis import checks  # its checks register on first use

    return [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_headers_conformance,
        checks.response_schema_conformance,
    ]


@dataclass(frozen=True)
class Seed:
    """One of each thing a path can name, so that generated ids sometimes hit."""

    path_ids: dict[str, int | str]


def _created(response: Any) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


def _seed(client: TestClient, db_url: str, admin: dict[str, str]) -> Seed:
    def post(path: str, body: dict[str, Any]) -> Any:
        return _created(client.post(path, json=body, headers=admin))

    team = post("/api/v1/care-teams", {"name": "Team A"})["id"]
    staff = post("/api/v1/staff", {"username": "nurse-1", "display_name": "Nurse One",
                                   "role": "nurse"})["id"]  # fmt: skip
    added = client.put(f"/api/v1/care-teams/{team}/members/{staff}", headers=admin)
    assert added.status_code == 200, added.text
    patient = post(
        "/api/v1/patients",
        {
            "external_ref": "MRN-000123",
            "given_name": "Test",
            "family_name": "Patient",
            "time_zone": "America/Chicago",
            "templates": ["hypertension"],
            "care_team_id": team,
        },
    )["id"]
    serial = post("/api/v1/devices", {"serial": "BP-000123", "kind": "blood_pressure_cuff"})[
        "serial"
    ]
    assigned = client.post(
        f"/api/v1/devices/{serial}/assign", json={"patient_id": patient}, headers=admin
    )
    assert assigned.status_code == 200, assigned.text
    with psycopg.connect(db_url, autocommit=True) as conn:
        alert = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
            " latest_message, first_triggered_at, last_triggered_at)"
            " VALUES (%s, 'bp_crisis', 1, 'critical', 'm', 'm', now(), now()) RETURNING id",
            [patient],
        ).fetchone()
        dead_letter = conn.execute(
            "INSERT INTO rejected_message (received_at, source, topic, device_serial, payload,"
            " reason, detail) VALUES (now(), 'mqtt', 'rpm/devices/BP-000999/readings',"
            " 'BP-000999', '{', 'malformed_json', 'test') RETURNING id"
        ).fetchone()
    assert alert is not None
    assert dead_letter is not None
    return Seed(
        {
            "team_id": team,
            "staff_id": staff,
            "patient_id": patient,
            "serial": serial,
            "alert_id": alert[0],
            "dead_letter_id": dead_letter[0],
            "version": 1,
        }
    )


def _exercise(
    client: TestClient, headers: dict[str, str], seed: Seed, spare_user_id: int | None = None
) -> list[str]:
    """Every /api/v1 operation with generated requests; what failed, one per kind."""
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith("/api/v1/")]
    # The Twilio webhooks are sent unsigned, so only their refusal (403) is checked here: a
    # request counts only with Twilio's signature over Twilio's form, which the schema
    # does not describe (it is Twilio's, not ours), and these settings have no auth token
    # to sign with. tests/integration/test_sms.py drives them with signed requests.
    # Signing out ends the session every other request is sent with: last.
    operations.sort(key=lambda op: op.path == SIGN_OUT)
    checks = _checks()
    failures: dict[tuple[str, str], str] = {}

    for operation in operations:
        known = {p.name: seed.path_ids[p.name] for p in operation.path_parameters
                 if p.name in seed.path_ids}  # fmt: skip
        strategy = st.one_of(
            operation.as_strategy(),
            operation.as_strategy(path_parameters=known),
            *schema.get_strategies_from_examples(operation),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        if spare_user_id is not None:
            # Deactivating the signed-in admin, or resetting their password, would sign
            # them out of the rest of the run.
            strategy = strategy.filter(
                lambda c: (c.path_parameters or {}).get("user_id") != spare_user_id
            )

        _send_all(client, headers, operation, strategy, checks, failures)
    return sorted(failures.values())


def _send_all(
    client: TestClient,
    headers: dict[str, str],
    operation: APIOperation,
    strategy: st.SearchStrategy[Case],
    checks: list[Any],
    failures: dict[tuple[str, str], str],
) -> None:
    """Send the operation's cases; put what failed in `failures`, one per kind."""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Case) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        # As httpx takes them (the TestClient's), not requests.
        kwargs.pop("cookies", None)
        if "data" in kwargs:
            kwargs["content"] = kwargs.pop("data")
        try:
            response = client.request(**kwargs)
        except Exception as exc:  # the TestClient raises what the app did not handle
            key = (operation.label, type(exc).__name__)
            failures.setdefault(key, f"{operation.label}: 500, {exc!r}\n  sent {kwargs}")
            return
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (operation.label, f"{failure.title} {response.status_code}")
                failures.setdefault(
                    key,
                    f"{operation.label}: {failure.title}: {failure.message}\n"
                    f"  got {response.status_code} {response.text[:300]}\n  sent {kwargs}",
                )

    send()


def test_every_operation_as_an_admin_gets_only_documented_replies(
    service: TestClient, db_url: str
) -> None:
    admin = sign_in_as(service, db_url, "schema-admin")
    seed = _seed(service, db_url, admin)
    admin_id = service.get("/api/v1/auth/me", headers=admin).json()["user_id"]
    failures = _exercise(service, admin, seed, spare_user_id=admin_id)
    assert not failures, "\n\n".join(failures)


def test_every_operation_as_a_nurse_gets_only_documented_replies(
    service: TestClient, db_url: str
) -> None:
    admin = sign_in_as(service, db_url, "schema-admin")
    seed = _seed(service, db_url, admin)
    nurse = sign_in_as(service, db_url, "schema-nurse", "nurse", int(seed.path_ids["staff_id"]))
    failures = _exercise(service, nurse, seed)
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """The schema as served, without starting the app (nothing is connected to)."""
    app = create_app(
        wiring("postgresql://unused@127.0.0.1:1/unused", BrokerAddress("127.0.0.1", 1), [])
    )
    return app.openapi()


def _request_bodies(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    """(operation, body schema's name) of every operation with a JSON body."""
    found = []
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody")
            if body is not None:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                found.append((f"{method.upper()} {path}", ref.rsplit("/", 1)[1]))
    return found


def test_every_request_body_has_an_example_its_model_accepts(openapi: dict[str, Any]) -> None:
    models = {model.__name__: model for model in RequestBody.__subclasses__()}
    bodies = _request_bodies(openapi)
    assert len(bodies) >= 19
    for operation, name in bodies:
        examples = openapi["components"]["schemas"][name].get("examples")
        assert examples, f"{operation}: its body ({name}) has no example for /docs"
        for example in examples:
            models[name].model_validate(example)  # raises, saying why, if it does not fit


def test_every_error_is_documented_as_problem_details(openapi: dict[str, Any]) -> None:
    """Every /api/v1 operation lists its problem replies, with the one body schema."""
    for path, methods in openapi["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in methods.items():
            responses = operation["responses"]
            expected = {"400", "422", "503"} | (
                {"401", "403"} if "security" in operation else set()
            )
            assert expected <= responses.keys(), f"{method.upper()} {path}: {sorted(responses)}"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    content = response["content"]
                    assert list(content) == ["application/problem+json"], (path, status)
                    assert content["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"
                    }
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


def test_what_schemathesis_found_is_refused_with_a_reason(service: TestClient, db_url: str) -> None:
    """Each a 500 once; now a 4xx problem that says what to change."""
    admin = sign_in_as(service, db_url, "schema-admin")
    seed = _seed(service, db_url, admin)
    team, staff = seed.path_ids["team_id"], seed.path_ids["staff_id"]
    refused = {
        # PostgreSQL's text cannot hold NUL: in a query, a path, a body (even deep in a plan).
        "NUL in a query": service.get("/api/v1/devices", params={"after": "BP\x00"}, headers=admin),
        "NUL in a path": service.get("/api/v1/devices/BP%00", headers=admin),
        "NUL in a body": service.post(
            "/api/v1/care-teams", json={"name": "Team\x00B"}, headers=admin
        ),
        "NUL in a plan": service.post(
            "/api/v1/patients",
            json={
                "external_ref": "MRN-000124",
                "given_name": "Test",
                "family_name": "Patient",
                "time_zone": "UTC",
                "care_plan": {
                    "rules": [
                        {
                            "id": "r",
                            "title": "T\x00",
                            "kind": "missed",
                            "expects": ["blood_pressure"],
                            "days": 3,
                        }
                    ]
                },
            },
            headers=admin,
        ),
        # Past a bigint column.
        "an id past bigint": service.get(
            "/api/v1/dead-letters", params={"before_id": 2**64}, headers=admin
        ),
        "a team past bigint": service.put(
            f"/api/v1/patients/{seed.path_ids['patient_id']}/care-team",
            json={"care_team_id": -(2**65)},
            headers=admin,
        ),
        "shifts until before since": service.get(
            f"/api/v1/care-teams/{team}/shifts",
            params={"until": "2000-01-01T00:00:00Z"},
            headers=admin,
        ),
        "a shift before year 1 in UTC": service.post(
            f"/api/v1/care-teams/{team}/shifts",
            json={
                "staff_id": staff,
                "tier": 1,
                "starts_at": "0001-01-01T00:00:00+14:00",
                "ends_at": "0001-01-02T00:00:00Z",
            },
            headers=admin,
        ),
        "quiet hours with an offset": service.post(
            "/api/v1/staff",
            json={
                "username": "nurse-2",
                "display_name": "Nurse Two",
                "role": "nurse",
                "quiet_hours_start": "22:00:00+20:00",
                "quiet_hours_end": "07:00:00",
            },
            headers=admin,
        ),
    }
    for what, response in refused.items():
        assert response.status_code == 422, (what, response.text)
        assert response.headers["content-type"] == "application/problem+json", what
        assert response.json()["detail"], what
    not_utf8 = service.post(
        "/api/v1/care-teams",
        content=b'{"name": "\xff"}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert not_utf8.status_code == 400
    assert "UTF-8" in not_utf8.json()["detail"]
