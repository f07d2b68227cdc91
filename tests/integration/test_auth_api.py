"""Sign-in, users, API keys and the audit trail over HTTP, against the real PostgreSQL:
tokens that expire and are revoked, the same refusal for a wrong username and a wrong
password, the throttle, keys shown once, deactivation, and an append-only audit trail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support import add_user, bearer

ADMIN_PASSWORD = "admin password of the test"
NURSE_PASSWORD = "nurse password of the test"


@pytest.fixture
def admin(service: TestClient, db_url: str) -> dict[str, str]:
    add_user(db_url, "admin-1", "admin", ADMIN_PASSWORD)
    return bearer(service, "admin-1", ADMIN_PASSWORD)


def _sign_in(client: TestClient, username: str, password: str) -> int:
    body = {"username": username, "password": password}
    return client.post("/api/v1/auth/token", json=body).status_code


def test_a_token_signs_in_until_it_expires_or_is_signed_out(
    service: TestClient, admin: dict[str, str], db_url: str
) -> None:
    me = service.get("/api/v1/auth/me", headers=admin)
    assert me.status_code == 200
    assert me.json()["role"] == "admin"
    assert "manage_users" in me.json()["permissions"]

    anonymous = service.get("/api/v1/auth/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert "sign in first" in anonymous.json()["detail"]
    forged = service.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401

    assert service.post("/api/v1/auth/sign-out", headers=admin).status_code == 204
    assert service.get("/api/v1/auth/me", headers=admin).status_code == 401

    again = bearer(service, "admin-1", ADMIN_PASSWORD)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE auth_session SET expires_at = now() - interval '1 second'")
    expired = service.get("/api/v1/auth/me", headers=again)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT token_hash FROM auth_session").fetchall()
    token = again["Authorization"].split()[1]
    assert all(token.encode() not in bytes(row[0]) for row in stored)


def test_a_wrong_username_and_a_wrong_password_are_refused_alike_then_throttled(
    service: TestClient, db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", NURSE_PASSWORD)
    unknown = service.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"})
    wrong = service.post("/api/v1/auth/token", json={"username": "nurse-1", "password": "x"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"] == "the username or password is wrong"
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["title"] == "Unauthorized"

    for _ in range(4):
        assert _sign_in(service, "nurse-1", "guess") == 401
    # Five failures within the window: even the right password waits now.
    locked = service.post(
        "/api/v1/auth/token", json={"username": "nurse-1", "password": NURSE_PASSWORD}
    )
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 800
    assert "too many failed sign-ins" in locked.json()["detail"]
    # The failures were recorded although each request failed; and audited.
    with psycopg.connect(db_url) as conn:
        failures = conn.execute("SELECT count(*) FROM login_failure").fetchone()
        refused = conn.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'sign_in_refused'"
        ).fetchone()
    assert failures == (6,)
    assert refused == (7,)


def test_admins_manage_users_and_others_are_refused_with_the_reason(
    service: TestClient, admin: dict[str, str]
) -> None:
    weak = service.post(
        "/api/v1/users", headers=admin,
        json={"username": "nurse-1", "role": "nurse", "password": "short"},
    )  # fmt: skip
    assert weak.status_code == 422
    assert "at least 12" in weak.json()["detail"]
    created = service.post(
        "/api/v1/users", headers=admin,
        json={"username": "nurse-1", "role": "nurse", "password": NURSE_PASSWORD},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert "password_hash" not in created.json()
    assert NURSE_PASSWORD not in created.text
    taken = service.post(
        "/api/v1/users", headers=admin,
        json={"username": "nurse-1", "role": "nurse", "password": NURSE_PASSWORD},
    )  # fmt: skip
    assert taken.status_code == 409

    nurse = bearer(service, "nurse-1", NURSE_PASSWORD)
    refused = service.get("/api/v1/users", headers=nurse)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "a user with the role nurse may not manage users and API keys"
    )

    # Deactivating signs the user out at once.
    user_id = created.json()["id"]
    patch = service.patch(f"/api/v1/users/{user_id}", headers=admin, json={"active": False})
    assert patch.json()["active"] is False
    assert service.get("/api/v1/auth/me", headers=nurse).status_code == 401
    assert _sign_in(service, "nurse-1", NURSE_PASSWORD) == 401


def test_an_integration_key_is_shown_once_works_and_is_revoked(
    service: TestClient, admin: dict[str, str]
) -> None:
    with_password = service.post(
        "/api/v1/users", headers=admin,
        json={"username": "ehr", "role": "integration", "password": NURSE_PASSWORD},
    )  # fmt: skip
    assert with_password.status_code == 422
    user = service.post(
        "/api/v1/users", headers=admin, json={"username": "ehr", "role": "integration"}
    ).json()
    created = service.post(
        f"/api/v1/users/{user['id']}/api-keys", headers=admin, json={"name": "EHR feed"}
    )
    assert created.status_code == 201
    key = created.json()["key"]
    listed = service.get(f"/api/v1/users/{user['id']}/api-keys", headers=admin).json()
    assert [k["prefix"] for k in listed] == [created.json()["api_key"]["prefix"]]
    assert key not in json.dumps(listed)

    as_ehr = {"Authorization": f"Bearer {key}"}
    me = service.get("/api/v1/auth/me", headers=as_ehr).json()
    assert (me["username"], me["sees_all_patients"]) == ("ehr", True)
    wrong_secret = {"Authorization": f"Bearer {key[:-2]}xx"}
    assert service.get("/api/v1/auth/me", headers=wrong_secret).status_code == 401

    key_id = created.json()["api_key"]["id"]
    revoked = service.post(f"/api/v1/api-keys/{key_id}/revoke", headers=admin)
    assert revoked.json()["revoked_by"] == "admin-1"
    assert service.get("/api/v1/auth/me", headers=as_ehr).status_code == 401

    me_admin = service.get("/api/v1/auth/me", headers=admin).json()
    for_a_person = service.post(
        f"/api/v1/users/{me_admin['user_id']}/api-keys", headers=admin, json={"name": "mine"}
    )
    assert for_a_person.status_code == 422
    assert "integration users only" in for_a_person.json()["detail"]


def test_the_audit_trail_is_queryable_by_admins_and_cannot_be_changed(
    service: TestClient, admin: dict[str, str], db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", NURSE_PASSWORD)
    nurse = bearer(service, "nurse-1", NURSE_PASSWORD)
    assert service.get("/api/v1/audit", headers=nurse).status_code == 403
    page = service.get("/api/v1/audit", headers=admin, params={"limit": 2})
    assert page.status_code == 200
    events = page.json()["events"]
    # Newest first: the nurse's refusal, then the nurse's sign-in.
    assert [(e["username"], e["action"]) for e in events] == [
        ("nurse-1", "denied"),
        ("nurse-1", "sign_in"),
    ]
    assert events[0]["status"] == 403
    assert events[0]["path"] == "/api/v1/audit"
    older = service.get(
        "/api/v1/audit", headers=admin, params={"before": page.json()["next"]}
    ).json()
    assert [e["action"] for e in older["events"]] == ["sign_in"]
    assert older["next"] is None

    with psycopg.connect(db_url, autocommit=True) as conn:
        for statement in ("UPDATE audit_event SET username = 'x'", "DELETE FROM audit_event"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


def test_the_first_admin_is_made_on_the_command_line(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env["RPM_DATABASE_URL"] = db_url
    rpm = str(Path(sys.executable).with_name("rpm"))
    added = subprocess.run(
        [rpm, "users", "add", "admin-1", "--role", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n", env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["role"] == "admin"
    weak = subprocess.run(
        [rpm, "users", "add", "admin-2", "--role", "admin", "--password-stdin"],
        input="short\n", env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert weak.returncode == 1
    assert "at least 12" in weak.stderr


def test_every_error_is_a_problem_details_body_that_echoes_no_input(
    service: TestClient,
) -> None:
    invalid = service.post("/api/v1/auth/token", json={"password": "secret sauce 123"})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    problem = invalid.json()
    assert problem["title"] == "Unprocessable Entity"
    assert problem["instance"] == "/api/v1/auth/token"
    assert problem["detail"] == "the request is not valid: body.username: Field required"
    assert problem["errors"] == [
        {"loc": ["body", "username"], "msg": "Field required", "type": "missing"}
    ]
    assert "secret sauce" not in invalid.text
    unknown = service.get("/api/v1/no-such-thing")
    assert unknown.status_code == 404
    assert unknown.json()["status"] == 404
    assert unknown.json()["detail"] == "Not Found"
