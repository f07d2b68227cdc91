"""FHIR Bulk Data export with SMART Backend Services sign-in, against the real
PostgreSQL and the real app: an EHR's pull from client registration to the NDJSON
lines (validated with fhir.resources and @medplum/core), `_type`, `_since`, Group
exports, cancel, refusals as OperationOutcomes (and OAuth errors at the token URL), and
an exporter that dies after the first type, its job finished by another with no line
twice."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress, BulkSettings
from rpm.fhir.exporter import BulkExporter
from tests.fhir_checks import check_resource
from tests.fhir_validator import validate_with_medplum
from tests.integration.test_fhir_api import Clinic, _outcome, clinic
from tests.smart_keys import ClientKey
from tests.support import MosquittoProcess, add_alert, wait_until_ready, wiring

__all__ = ["clinic"]  # the fixture, shared with the Observation search's tests

TOKEN_URL = "http://testserver/fhir/auth/token"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
# Three a file: every type of the clinic's spans several.
FILE_RESOURCES = 3
LEASE_S = 1.0


@pytest.fixture
def service(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The app with small export files and a short lease; `run_exports` (a parameter,
    True by default) says whether its own exporter runs."""
    run_exports = getattr(request, "param", True)
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    broker.start()
    fatal: list[str] = []
    wired = wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal)
    bulk = BulkSettings(
        run_exports=run_exports, poll_s=0.2, lease_s=LEASE_S, file_resources=FILE_RESOURCES
    )
    wired = dataclasses.replace(wired, settings=wired.settings.model_copy(update={"bulk": bulk}))
    try:
        with TestClient(create_app(wired)) as client:
            wait_until_ready(client)
            yield client
    finally:
        broker.stop()
    assert fatal == []


def _register(clinic: Clinic, key: ClientKey, scopes: list[str], name: str = "clinic-ehr") -> str:
    response = clinic.client.post(
        "/api/v1/smart-clients",
        json={"name": name, "jwks": key.jwks, "scopes": scopes},
        headers=clinic.admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def _token_request(clinic: Clinic, assertion: str, scope: str = "system/*.read") -> Any:
    return clinic.client.post(
        "/fhir/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": scope,
        },
    )


def _token(
    clinic: Clinic, key: ClientKey, client_id: str, scope: str = "system/*.read"
) -> dict[str, str]:
    response = _token_request(clinic, key.assertion(client_id, TOKEN_URL), scope)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, scope)
    return {"Authorization": f"Bearer {body['access_token']}"}


def _kick_off(
    clinic: Clinic, headers: dict[str, str], path: str = "/fhir/Patient/$export", **params: str
) -> str:
    response = clinic.client.get(path, params=params or None, headers={**headers, **ASYNC})
    assert response.status_code == 202, response.text
    status_url = response.headers["content-location"]
    assert status_url.startswith("http://testserver/fhir/bulk-status/")
    return status_url


def _manifest(clinic: Clinic, status_url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll as a client does until the export is complete."""
    deadline = time.monotonic() + 30
    while True:
        response = clinic.client.get(status_url, headers=headers)
        if response.status_code == 200:
            assert "expires" in response.headers
            return dict(response.json())
        assert response.status_code == 202, response.text
        assert response.headers["retry-after"] == "5"
        assert response.headers["x-progress"]
        assert time.monotonic() < deadline, response.headers["x-progress"]
        time.sleep(0.1)


def _pulled(
    clinic: Clinic, manifest: dict[str, Any], headers: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Every file of the manifest downloaded, its lines by type, each line's count right."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        response = clinic.client.get(output["url"], headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/fhir+ndjson"
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == output["count"]
        assert {line["resourceType"] for line in lines} == {output["type"]}
        by_type.setdefault(output["type"], []).extend(lines)
    return by_type


def _ids(lines: list[dict[str, Any]]) -> list[str]:
    return [line["id"] for line in lines]


def test_an_ehr_pulls_everything_with_a_backend_services_token(clinic: Clinic) -> None:
    """Registration, the SMART configuration, a token for a signed assertion, kick-off,
    polls, the manifest and its files: every patient's resources once, valid."""
    alert = add_alert(clinic.db_url, clinic.patient, "bp_crisis", "critical", "Systolic 182")
    key = ClientKey("ES384")
    client_id = _register(clinic, key, ["system/*.read"])
    configuration = clinic.client.get("/fhir/.well-known/smart-configuration").json()
    assert configuration["token_endpoint"] == TOKEN_URL
    assert "private_key_jwt" in configuration["token_endpoint_auth_methods_supported"]
    ehr = _token(clinic, key, client_id)

    status_url = _kick_off(clinic, ehr)
    manifest = _manifest(clinic, status_url, ehr)
    assert manifest["request"] == "http://testserver/fhir/Patient/$export"
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert [o["type"] for o in manifest["output"]][:1] == ["Patient"]
    assert all(o["count"] <= FILE_RESOURCES for o in manifest["output"])
    pulled = _pulled(clinic, manifest, ehr)

    # An integration sees every team's patients: the stranger's too.
    assert sorted(_ids(pulled["Patient"])) == sorted(
        str(p) for p in (clinic.patient, clinic.neighbour, clinic.stranger)
    )
    observations = pulled["Observation"]
    assert len(observations) == len(set(_ids(observations))) == 10 + 1 + 1
    assert {d["serialNumber"] for d in pulled["Device"]} == {
        "BP-F1",
        "SC-F1",
        "GL-F1",
        "SC-F2",
        "SC-F9",
    }
    assert _ids(pulled["Flag"]) == [str(alert)]
    # The same resources as the FHIR API serves: an Observation is its search's.
    search = clinic.client.get(
        "/fhir/Observation", params={"patient": clinic.patient, "_count": 1}, headers=clinic.admin
    ).json()
    assert search["entry"][0]["resource"] in observations

    sample = [lines[i] for lines in pulled.values() for i in (0, -1)]
    for resource in sample:
        check_resource(resource)
    validate_with_medplum(sample)

    # A file needs the token, and is the requester's only.
    (first, *_) = manifest["output"]
    _outcome(clinic.client.get(first["url"]), 401, "sign in first")
    _outcome(clinic.client.get(first["url"], headers=clinic.nurse), 404, "no file")
    _outcome(clinic.client.get(status_url, headers=clinic.nurse), 404, "not yours")

    with psycopg.connect(clinic.db_url) as conn:
        audit = conn.execute(
            "SELECT username, action, resource, count(DISTINCT patient_id) FROM audit_event"
            " WHERE resource IN ('fhir_bulk_export', 'fhir_bulk_file', 'smart_token')"
            " GROUP BY 1, 2, 3 ORDER BY 2"
        ).fetchall()
    assert audit == [
        ("smart:clinic-ehr", "download", "fhir_bulk_file", 3),
        ("smart:clinic-ehr", "export", "fhir_bulk_export", 3),
        ("smart:clinic-ehr", "sign_in", "smart_token", 0),
    ]


def test_a_care_teams_group_export_with_type_and_since(clinic: Clinic) -> None:
    """Group/<team>/$export with a staff token: that team's patients only; `_type` picks
    the types and `_since` what changed since (readings by when rpm received them)."""
    team = _team_of(clinic, clinic.patient)
    status_url = _kick_off(
        clinic, clinic.nurse, f"/fhir/Group/{team}/$export",
        _type="Observation,Patient", _since="2026-11-20T00:00:00Z",
    )  # fmt: skip
    manifest = _manifest(clinic, status_url, clinic.nurse)
    assert manifest["request"].endswith(
        "_type=Observation%2CPatient&_since=2026-11-20T00%3A00%3A00Z"
    )
    pulled = _pulled(clinic, manifest, clinic.nurse)
    assert set(pulled) == {"Patient", "Observation"}
    # The patients were enrolled today; of the readings, those received from the 20th.
    assert sorted(_ids(pulled["Patient"])) == sorted([str(clinic.patient), str(clinic.neighbour)])
    assert [o["effectiveDateTime"] for o in pulled["Observation"]] == [
        "2026-11-23T23:30:00-06:00", "2026-11-24T07:00:00-06:00", "2026-11-24T07:05:00-06:00",
    ]  # fmt: skip
    # The nurse's team is not the stranger's.
    stranger_team = _team_of(clinic, clinic.stranger)
    response = clinic.client.get(
        f"/fhir/Group/{stranger_team}/$export", headers={**clinic.nurse, **ASYNC}
    )
    _outcome(response, 404, "no Group")


def _team_of(clinic: Clinic, patient_id: int) -> int:
    with psycopg.connect(clinic.db_url) as conn:
        row = conn.execute(
            "SELECT care_team_id FROM patient WHERE id = %s", [patient_id]
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_token_is_refused_for_an_expired_mis_signed_replayed_or_overreaching_assertion(
    clinic: Clinic,
) -> None:
    key = ClientKey("RS384")
    client_id = _register(clinic, key, ["system/Observation.read"])
    observations = "system/Observation.read"
    expired = key.assertion(client_id, TOKEN_URL, exp=int(time.time()) - 120)
    mis_signed = ClientKey("RS384", kid=key.kid).assertion(client_id, TOKEN_URL)
    refusals = [
        (expired, observations, 401, "expired"),
        (mis_signed, observations, 401, "signature"),
        (key.assertion(client_id, "http://elsewhere/token"), observations, 401, "aud"),
        (key.assertion(client_id, TOKEN_URL), "system/*.read", 400, "not granted"),
        (key.assertion("no-such-client", TOKEN_URL), observations, 401, "no such client"),
    ]
    for assertion, scope, status, says in refusals:
        response = _token_request(clinic, assertion, scope)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["error"] == ("invalid_scope" if status == 400 else "invalid_client")
        assert says in body["error_description"]
        assert "access_token" not in body
    # An assertion is good once: its jti, seen again, is a replay.
    once = key.assertion(client_id, TOKEN_URL)
    assert _token_request(clinic, once, "system/Observation.read").status_code == 200
    replayed = _token_request(clinic, once, "system/Observation.read")
    assert (replayed.status_code, replayed.json()["error"]) == (401, "invalid_client")
    assert "used before" in replayed.json()["error_description"]

    # Without a good token no kick-off: each refusal an OperationOutcome.
    _outcome(clinic.client.get("/fhir/Patient/$export", headers=ASYNC), 401, "sign in first")
    forged = {"Authorization": "Bearer not-a-token", **ASYNC}
    _outcome(clinic.client.get("/fhir/Patient/$export", headers=forged), 401, "unknown, expired")
    observations_only = _token(clinic, key, client_id, "system/Observation.read")
    response = clinic.client.get(
        "/fhir/Patient/$export", params={"_type": "Patient"}, headers={**observations_only, **ASYNC}
    )
    _outcome(response, 403, "do not read Patient")
    # Without `_type`, what the scopes read: Observations only.
    manifest = _manifest(clinic, _kick_off(clinic, observations_only), observations_only)
    assert {o["type"] for o in manifest["output"]} == {"Observation"}

    # A client deactivated: its tokens end at once.
    response = clinic.client.patch(
        f"/api/v1/smart-clients/{client_id}", json={"active": False}, headers=clinic.admin
    )
    assert response.status_code == 200, response.text
    _outcome(
        clinic.client.get("/fhir/Patient/$export", headers={**observations_only, **ASYNC}),
        401,
        "unknown",
    )


@pytest.mark.parametrize(
    ("params", "headers", "says"),
    [
        ({}, {"Accept": "application/fhir+json"}, "Prefer: respond-async"),
        ({"_typeFilter": "Observation?code=8867-4"}, ASYNC, "not supported here: _typeFilter"),
        ({"_type": "Encounter"}, ASYNC, "Encounter"),
        ({"_since": "2026-11-20T00:00:00"}, ASYNC, "time zone"),
        ({"_outputFormat": "text/csv"}, ASYNC, "NDJSON only"),
    ],
)
def test_a_kick_off_that_cannot_be_taken_is_a_400_outcome(
    clinic: Clinic, params: dict[str, str], headers: dict[str, str], says: str
) -> None:
    response = clinic.client.get(
        "/fhir/Patient/$export", params=params, headers={**clinic.admin, **headers}
    )
    _outcome(response, 400, says)


@pytest.mark.parametrize("service", [False], indirect=True)
def test_a_cancelled_export_is_gone_with_its_files(clinic: Clinic) -> None:
    status_url = _kick_off(clinic, clinic.admin)
    response = clinic.client.get(status_url, headers=clinic.admin)
    assert (response.status_code, response.headers["x-progress"]) == (
        202,
        "Patient waiting; Observation waiting; Device waiting; Flag waiting",
    )
    cancelled = clinic.client.delete(status_url, headers=clinic.admin)
    assert cancelled.status_code == 202, cancelled.text
    _outcome(clinic.client.get(status_url, headers=clinic.admin), 404, "cancelled")
    _outcome(clinic.client.delete(status_url, headers=clinic.admin), 404, "cancelled")
    with psycopg.connect(clinic.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM bulk_export").fetchone() == (0,)


@pytest.mark.parametrize("service", [False], indirect=True)
def test_an_export_whose_exporter_dies_is_finished_by_another_without_a_line_twice(
    clinic: Clinic,
) -> None:
    """Exporter A writes the Patient files, then dies holding the job; B cannot take it
    while A's lease holds, then finishes it from where A's progress says; A, were it to
    wake, finds the job no longer its own."""
    add_alert(clinic.db_url, clinic.patient, "bp_crisis", "critical")
    status_url = _kick_off(clinic, clinic.admin)
    portal, app = clinic.client.portal, clinic.client.app
    assert portal is not None
    pool, settings = app.state.pool, app.state.settings.bulk  # type: ignore[attr-defined]
    dying, taking_over = BulkExporter(pool, settings), BulkExporter(pool, settings)

    held = portal.call(dying.claim)
    assert held is not None
    while (
        "Patient done"
        not in clinic.client.get(status_url, headers=clinic.admin).headers["x-progress"]
    ):
        assert portal.call(dying.step, held)
    progress = clinic.client.get(status_url, headers=clinic.admin).headers["x-progress"]
    assert progress == "Patient done (3); Observation waiting; Device waiting; Flag waiting"

    assert portal.call(taking_over.run_once) is False  # A's lease still holds
    time.sleep(LEASE_S + 0.2)
    assert portal.call(taking_over.run_once) is True
    assert portal.call(dying.step, held) is False

    manifest = _manifest(clinic, status_url, clinic.admin)
    pulled = _pulled(clinic, manifest, clinic.admin)
    counts = {t: len(lines) for t, lines in pulled.items()}
    assert counts == {"Patient": 3, "Observation": 12, "Device": 5, "Flag": 1}
    for lines in pulled.values():
        assert len(set(_ids(lines))) == len(lines)
    # The Patient files were A's: written once, not again by B.
    assert [o["url"].rsplit("/", 1)[1] for o in manifest["output"] if o["type"] == "Patient"] == [
        "Patient-1.ndjson"
    ]


def test_rpm_smart_clients_registers_lists_and_deactivates(db_url: str, tmp_path: Path) -> None:
    """The CLI's registration: the client_id printed, a private key refused."""
    rpm = str(Path(sys.executable).with_name("rpm"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")} | {
        "RPM_DATABASE_URL": db_url
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [rpm, "smart-clients", *args], env=env, cwd=tmp_path, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip

    key = ClientKey("RS384")
    (tmp_path / "jwks.json").write_text(json.dumps(key.jwks))
    done = run("register", "clinic-ehr", "--jwks", "jwks.json", "--scope", "system/*.read")
    assert done.returncode == 0, done.stderr
    registered = json.loads(done.stdout)
    assert (registered["name"], registered["scopes"]) == ("clinic-ehr", ["system/*.read"])
    listed = [json.loads(line) for line in run("list").stdout.splitlines()]
    assert [c["client_id"] for c in listed] == [registered["client_id"]]
    deactivated = json.loads(run("deactivate", registered["client_id"]).stdout)
    assert deactivated["active"] is False

    private = {"keys": [{**key.jwks["keys"][0], "d": "not-for-rpm"}]}
    (tmp_path / "private.json").write_text(json.dumps(private))
    refused = run("register", "other", "--jwks", "private.json", "--scope", "system/*.read")
    assert refused.returncode == 1
    assert "register the public key only" in refused.stderr
