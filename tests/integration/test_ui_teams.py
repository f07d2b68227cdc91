"""Care teams from the browser against the real service: an admin creates a team, adds
staff and gives them sign-ins; a care manager runs their own team's rota (gaps in cover
shown, overlaps refused in the form) and adds staff to it, never another team's; a nurse
reads the rota. Every change goes through the API's own functions: refused and audited
as the API's are."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import (
    TEST_PASSWORD,
    add_user,
    assert_every_control_is_labelled,
    browser_csrf,
    browser_sign_in,
)


def _csrf(db_url: str, username: str) -> dict[str, str]:
    return {"X-CSRF-Token": browser_csrf(db_url, username)}


def _audited(db_url: str, username: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT action, resource FROM audit_event WHERE username = %s"
            " AND action NOT IN ('read', 'sign_in') ORDER BY id",
            [username],
        ).fetchall()
    return [(action, resource) for action, resource in rows]


@pytest.fixture
def manager(db_url: str, clinic: Clinic) -> str:
    """manager-1, Team A's care manager, signed in in the browser."""
    staff = clinic.first.staff("manager-1", "Care Manager One", role="care_manager")
    add_user(db_url, "manager-1", "care_manager", TEST_PASSWORD, staff)
    return "manager-1"


def _text(response: object) -> str:
    return html.unescape(response.text)  # type: ignore[attr-defined]


def test_an_admin_creates_a_team_adds_staff_and_gives_them_a_sign_in(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    browser_sign_in(ui_client, "admin-1")
    csrf = _csrf(db_url, "admin-1")
    teams = ui_client.get("/ui/teams")
    assert teams.status_code == 200
    assert_every_control_is_labelled(teams.text)
    assert "Team A" in teams.text
    assert "Team B" in teams.text

    created = ui_client.post("/ui/teams", data={"name": "Team C"}, headers=csrf)
    assert created.status_code == 200  # followed the redirect
    assert "Care team created" in created.text
    team_id = int(re.search(r"/ui/teams/(\d+)", str(created.url))[1])  # type: ignore[index]
    taken = ui_client.post("/ui/teams", data={"name": "Team C"}, headers=csrf)
    assert taken.status_code == 409
    assert "A care team named 'Team C' exists already." in _text(taken)

    staff = ui_client.post(
        "/ui/staff",
        data={"username": "nurse-7", "display_name": "Nurse Seven", "role": "nurse",
              "phone": "+15555550107", "time_zone": "America/Chicago"},
        headers=csrf,
    )  # fmt: skip
    assert staff.status_code == 200
    assert "Staff member added" in staff.text
    assert_every_control_is_labelled(staff.text)
    refused = ui_client.post(
        "/ui/staff",
        data={"username": "Bad Name", "display_name": "Nurse", "role": "nurse"},
        headers=csrf,
    )
    assert refused.status_code == 422
    assert "A username is 1 to 64 lower-case letters" in _text(refused)
    assert 'value="Bad Name"' in refused.text
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT id FROM staff WHERE username = 'nurse-7'").fetchone()
    assert row is not None
    nurse = row[0]

    weak = ui_client.post(f"/ui/staff/{nurse}/login", data={"password": "short"}, headers=csrf)
    assert weak.status_code == 422
    assert "A password needs at least 12 characters." in _text(weak)
    given = ui_client.post(
        f"/ui/staff/{nurse}/login", data={"password": TEST_PASSWORD}, headers=csrf
    )
    assert given.status_code == 200
    assert "Sign-in given" in given.text
    assert "Password for nurse-7" not in given.text

    member = ui_client.post(
        f"/ui/teams/{team_id}/members", data={"staff_id": str(nurse)}, headers=csrf
    )
    assert member.status_code == 200
    assert "Nurse Seven" in member.text
    assert re.search(r'data-label="Sign-in">nurse-7<', member.text)
    assert _audited(db_url, "admin-1")[-4:] == [
        ("create", "care_team"),
        ("add", "staff"),
        ("create", "user"),
        ("add_member", "care_team"),
    ]

    # The new nurse signs in and reads the team's rota, without its controls.
    ui_client.cookies.clear()
    browser_sign_in(ui_client, "nurse-7", TEST_PASSWORD)
    page = ui_client.get(f"/ui/teams/{team_id}")
    assert page.status_code == 200
    assert "Put a member on call" not in page.text
    assert "No cover all day" in page.text
    refused_shift = ui_client.post(
        f"/ui/teams/{team_id}/shifts",
        data={"staff_id": str(nurse), "tier": "1", "starts_at": "2030-01-01T08:00",
              "ends_at": "2030-01-01T20:00"},
        headers=_csrf(db_url, "nurse-7"),
    )  # fmt: skip
    assert refused_shift.status_code == 403
    assert ui_client.get("/ui/staff").status_code == 403


def test_a_care_manager_runs_their_own_teams_rota_with_gaps_shown(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    browser_sign_in(ui_client, manager)
    csrf = _csrf(db_url, manager)
    team = clinic.first.team_id
    teams = ui_client.get("/ui/teams")
    assert "Team A" in teams.text
    assert "Team B" not in teams.text
    assert "Create a care team" not in teams.text
    assert ui_client.get(f"/ui/teams/{clinic.second.team_id}").status_code == 404
    assert ui_client.post("/ui/teams", data={"name": "Mine"}, headers=csrf).status_code == 403

    week = datetime.now(UTC).date() + timedelta(days=14)
    shift = {"staff_id": str(clinic.nurse), "tier": "1",
             "starts_at": f"{week}T08:00", "ends_at": f"{week}T20:00"}  # fmt: skip
    added = ui_client.post(f"/ui/teams/{team}/shifts", data=shift, headers=csrf)
    assert added.status_code == 200
    page = _text(added)
    assert "Shift added to the rota." in page
    assert_every_control_is_labelled(added.text)
    # The week it starts in, on the reader's clock: the shift, and the gaps either side.
    assert "08:00\N{EN DASH}20:00 Nurse One" in page
    assert "00:00\N{EN DASH}08:00 no cover" in page
    assert "20:00\N{EN DASH}24:00 no cover" in page
    # Every other day and tier is a gap: 7 days x 3 tiers, less one, plus the shift's two.
    assert "22 gaps in cover this week." in page

    overlap = ui_client.post(
        f"/ui/teams/{team}/shifts",
        data=shift | {"staff_id": str(clinic.teammate), "starts_at": f"{week}T19:00",
                      "ends_at": f"{week}T23:00"},
        headers=csrf,
    )  # fmt: skip
    assert overlap.status_code == 409
    text = _text(overlap)
    assert "The shift overlaps another on-call nurse shift of care team" in text
    assert f'value="{week}T19:00"' in text
    backwards = ui_client.post(
        f"/ui/teams/{team}/shifts",
        data=shift | {"starts_at": f"{week}T20:00", "ends_at": f"{week}T08:00"},
        headers=csrf,
    )
    assert backwards.status_code == 422
    assert "A shift must end after it starts." in _text(backwards)
    other = ui_client.post(f"/ui/teams/{clinic.second.team_id}/shifts", data=shift, headers=csrf)
    assert other.status_code == 404

    with psycopg.connect(db_url) as conn:
        shift_of = conn.execute("SELECT id FROM on_call_shift WHERE care_team_id = %s", [team])
        row = shift_of.fetchone()
    assert row is not None
    removed = ui_client.post(
        f"/ui/teams/{team}/shifts/{row[0]}/remove", data={"week": str(week)}, headers=csrf
    )
    assert removed.status_code == 200
    assert "Shift deleted from the rota." in removed.text
    assert "No cover all day" in removed.text

    joined = ui_client.post(
        f"/ui/teams/{team}/staff",
        data={"username": "nurse-5", "display_name": "Nurse Five", "role": "nurse",
              "phone": "", "time_zone": "America/Denver"},
        headers=csrf,
    )  # fmt: skip
    assert joined.status_code == 200
    assert "Nurse Five" in joined.text
    # Sign-ins stay with admins.
    assert "Sign-in" not in joined.text
    assert ui_client.get("/ui/staff").status_code == 403
    assert _audited(db_url, manager) == [
        ("denied", "care_team"),
        ("denied", "create_care_teams"),
        ("add_shift", "care_team"),
        ("denied", "care_team"),
        ("remove_shift", "care_team"),
        ("add", "staff"),
        ("add_member", "care_team"),
        ("denied", "manage_users"),
    ]


def test_a_shift_under_way_ends_now_and_one_that_is_over_stays(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    team = clinic.first.team_id
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        under_way, over = (
            conn.execute(
                "INSERT INTO on_call_shift (care_team_id, staff_id, tier, starts_at, ends_at)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                [team, clinic.nurse, tier, starts, ends],
            ).fetchone()[0]  # type: ignore[index]
            for tier, starts, ends in (
                (1, now - timedelta(hours=2), now + timedelta(hours=6)),
                (2, now - timedelta(hours=9), now - timedelta(hours=1)),
            )
        )
    browser_sign_in(ui_client, manager)
    csrf = _csrf(db_url, manager)
    page = ui_client.get(f"/ui/teams/{team}")
    assert "End shift now" in page.text
    # The week holding the shift that is over, which began before this one on a Monday's
    # early hours (the manager's clock is UTC: their staff record's zone).
    week = (now - timedelta(hours=1)).date()
    page = ui_client.get(f"/ui/teams/{team}", params={"week": str(week)})
    assert "Over: kept as the record" in page.text
    ended = ui_client.post(f"/ui/teams/{team}/shifts/{under_way}/remove", headers=csrf)
    assert "Shift ended now." in ended.text
    kept = ui_client.post(f"/ui/teams/{team}/shifts/{over}/remove", headers=csrf)
    assert kept.status_code == 409
    assert "stays as the record of who was on call then" in _text(kept)
    with psycopg.connect(db_url) as conn:
        ends = conn.execute("SELECT ends_at FROM on_call_shift WHERE id = %s", [under_way])
        row = ends.fetchone()
    assert row is not None
    assert now < row[0] <= datetime.now(UTC)
