"""The worklist page against the real service: the user's teams' alerts, most severe
first, filtered and paged; acknowledge, assign and resolve from a row, each refusal said in
the row; every read and action audited as the API's are; others' teams' alerts out of
reach; a role without the permission refused."""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import (
    add_alert,
    assert_every_control_is_labelled,
    browser_csrf,
    browser_sign_in,
)


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="alert-(\d+)"', page)]


def _refresh_url(page: str) -> str:
    """Where the page reads its list again when it changes."""
    found = re.search(r'data-refresh="([^"]+)"', page)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


def _audited(db_url: str, action: str) -> list[tuple[str, int | None]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT path, patient_id FROM audit_event WHERE username = 'nurse-1'"
            " AND action = %s ORDER BY id",
            [action],
        ).fetchall()
    return [(path, patient) for path, patient in rows]


def test_the_worklist_shows_the_teams_alerts_most_severe_first_filtered_and_paged(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    mine, other = clinic.first.patient("MRN-A1"), clinic.first.patient("MRN-A2")
    theirs = clinic.second.patient("MRN-B1")
    warning = add_alert(db_url, other, "bp_stage2", "warning", "BP 150/95 over 7 days")
    critical = add_alert(db_url, mine, "bp_crisis", "critical", "BP 182/121: crisis")
    add_alert(db_url, theirs, "bp_crisis", "critical", "another team's")
    assigned = add_alert(db_url, other, "weight_gain", "high", opened_ago=timedelta(hours=3))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alert SET assigned_to = %s WHERE id = %s", [clinic.nurse, assigned])
        conn.execute(
            "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
            " status, expires_at) VALUES (%s, %s, '+15555550101', 'opened', 'critical', 1,"
            " 'failed', now())",
            [critical, clinic.nurse],
        )

    browser_sign_in(ui_client, "nurse-1")
    page = ui_client.get("/ui/worklist")
    assert page.status_code == 200
    assert _ids(page.text) == [critical, assigned, warning]
    assert "another team" not in page.text
    assert "MRN-A1" in page.text
    assert "BP 182/121: crisis" in page.text
    assert "3 h" in page.text
    assert "Assigned to Nurse One" in page.text
    assert page.text.count("SMS failed") == 1
    # The layout: who is signed in, the navigation, the CSRF token for htmx and forms.
    assert "Signed in as <strong>nurse-1</strong> (nurse)" in page.text
    assert '<a href="/ui/worklist" aria-current="page">Worklist</a>' in page.text
    assert f'"X-CSRF-Token": "{browser_csrf(db_url, "nurse-1")}"' in page.text
    assert_every_control_is_labelled(page.text)
    # The read is audited as the API's is: one row per patient shown.
    assert _audited(db_url, "read") == [("/ui/worklist", mine), ("/ui/worklist", other)]

    assert _ids(ui_client.get("/ui/worklist?severity=warning").text) == [warning]
    assert _ids(ui_client.get("/ui/worklist?mine=true").text) == [assigned]
    assert _ids(ui_client.get("/ui/worklist?severity=&mine=true").text) == [assigned]
    refused = ui_client.get("/ui/worklist?severity=urgent")
    assert refused.status_code == 422
    assert "severity" in refused.text

    # Pages of 25: the rest, then back to the first.
    many = [add_alert(db_url, mine, f"rule-{n}", "warning") for n in range(25)]
    first_page = ui_client.get("/ui/worklist")
    assert _ids(first_page.text)[:3] == [critical, assigned, warning]
    assert len(_ids(first_page.text)) == 25
    next_link = re.search(r'<a href="(/ui/worklist\?after=[^"]+)">Next page</a>', first_page.text)
    assert next_link is not None
    second_page = ui_client.get(next_link.group(1).replace("&amp;", "&"))
    assert _ids(second_page.text) == many[-3:]
    assert '<a href="/ui/worklist">First page</a>' in second_page.text
    assert "Next page" not in second_page.text
    # A live refresh reads the page shown, not the first.
    assert _refresh_url(first_page.text) == "/ui/worklist/table"
    refreshed = ui_client.get(_refresh_url(second_page.text), headers={"HX-Request": "true"})
    assert _ids(refreshed.text) == many[-3:]


def test_acknowledge_assign_and_resolve_from_a_row_each_refusal_in_words(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    alert = add_alert(db_url, patient, "bp_crisis", "critical", "BP 182/121: crisis")
    browser_sign_in(ui_client, "nurse-1")
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "nurse-1")}

    def post(action: str, **form: object) -> tuple[int, str]:
        response = ui_client.post(f"/ui/alerts/{alert}/{action}", data=form, headers=htmx)
        return response.status_code, response.text

    status, row = post("acknowledge")
    assert status == 200
    assert row.startswith(f'<tr id="alert-{alert}"')
    assert "Acknowledged by nurse-1" in row
    assert "Assigned to Nurse One" in row  # acknowledging takes it
    assert "Acknowledge<" not in row

    status, row = post("acknowledge")
    assert status == 409
    assert f"Alert {alert} is already acknowledged by nurse-1." in row
    assert 'class="refusal" role="alert"' in row

    status, row = post("assign", staff_id=clinic.outsider)
    assert status == 422
    assert f"Staff member {clinic.outsider} is not in care team {clinic.first.team_id}" in row
    # Only the patient's team is offered (the assignee aside).
    assert "Nurse Two" in row
    assert "Nurse Nine" not in row
    status, row = post("assign", staff_id=clinic.teammate)
    assert status == 200
    assert "Assigned to Nurse Two" in row

    status, row = post("resolve", outcome="patient_contacted", note="  ")
    assert status == 409
    assert "needs a note saying what was done" in row
    status, row = post("resolve", outcome="patient_contacted", note="re-measured 142/88")
    assert status == 200
    assert "Resolved by nurse-1 (patient contacted)" in row
    assert "<form" not in row
    status, row = post("resolve", outcome="no_action_needed", note="again")
    assert status == 409
    assert "is already resolved" in row
    assert post("resolve", outcome="not-an-outcome", note="x")[0] == 422

    with psycopg.connect(db_url) as conn:
        history = conn.execute(
            "SELECT actor, action FROM alert_event WHERE alert_id = %s ORDER BY id", [alert]
        ).fetchall()
    assert history == [
        ("system:rules", "opened"),
        ("nurse-1", "acknowledged"),
        ("nurse-1", "assigned"),
        ("nurse-1", "resolved"),
    ]
    for action in ("acknowledge", "assign", "resolve"):
        assert _audited(db_url, action) == [(f"/ui/alerts/{alert}/{action}", patient)]


def test_a_plain_form_post_returns_to_the_worklist_or_says_why_not(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    alert = add_alert(db_url, clinic.first.patient("MRN-A1"), "bp_crisis", "critical")
    browser_sign_in(ui_client, "nurse-1")
    form = {"csrf_token": browser_csrf(db_url, "nurse-1")}
    done = ui_client.post(f"/ui/alerts/{alert}/acknowledge", data=form, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["Location"] == "/ui/worklist"
    again = ui_client.post(f"/ui/alerts/{alert}/acknowledge", data=form)
    assert again.status_code == 409
    assert "<h1>That did not work</h1>" in again.text
    assert f"Alert {alert} is already acknowledged by nurse-1." in again.text


def test_another_teams_alert_is_out_of_reach_and_a_role_without_the_permission_refused(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    theirs = add_alert(db_url, clinic.second.patient("MRN-B1"), "bp_crisis", "critical")
    browser_sign_in(ui_client, "nurse-1")
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "nurse-1")}
    hidden = ui_client.post(f"/ui/alerts/{theirs}/acknowledge", headers=htmx)
    assert hidden.status_code == 404
    assert hidden.text == f"no alert with id {theirs}"
    assert hidden.headers["Content-Type"].startswith("text/plain")

    # An admin sees every team's alerts but acts on none.
    ui_client.cookies.clear()
    browser_sign_in(ui_client, "admin-1")
    page = ui_client.get("/ui/worklist")
    assert _ids(page.text) == [theirs]
    assert "Acknowledge" not in page.text
    assert "Assigned to me" not in page.text  # no staff record
    htmx["X-CSRF-Token"] = browser_csrf(db_url, "admin-1")
    refused = ui_client.post(f"/ui/alerts/{theirs}/acknowledge", headers=htmx)
    assert refused.status_code == 403
    assert refused.text == (
        "a user with the role admin may not acknowledge, assign or resolve alerts"
    )


def test_the_list_alone_for_a_live_refresh_is_audited_and_is_no_activity(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    alert = add_alert(db_url, patient, "bp_crisis", "critical")
    browser_sign_in(ui_client, "nurse-1")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE auth_session SET last_used_at = now() - interval '10 minutes'")
    fragment = ui_client.get(
        "/ui/worklist/table", headers={"HX-Request": "true", "X-RPM-Refresh": "live"}
    )
    assert fragment.status_code == 200
    assert fragment.text.startswith('<section id="worklist"')
    assert _ids(fragment.text) == [alert]
    assert _audited(db_url, "read") == [("/ui/worklist/table", patient)]
    with psycopg.connect(db_url) as conn:
        idle = conn.execute("SELECT now() - last_used_at FROM auth_session").fetchone()
    assert idle is not None
    assert idle[0] >= timedelta(minutes=10)
