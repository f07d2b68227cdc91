"""The admin pages against the real service: devices (register, assign, take back,
retire; the assignment history) and dead letters (filter, inspect, replay one or all that
match); each refusal in the API's words, the audit rows the API's routes write, and
nurses and care managers refused and not shown the pages."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import (
    TEST_PASSWORD,
    add_user,
    api_call_through,
    bearer,
    browser_csrf,
    browser_sign_in,
)


def _htmx(db_url: str, username: str = "admin-1") -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, username)}


def _audit_rows(db_url: str, path_prefix: str) -> list[tuple[Any, ...]]:
    """What the audit trail says of the requests under this path: action, resource, its
    id, the patient, the status and the details."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT action, resource, resource_id, patient_id, status, details"
            " FROM audit_event WHERE path LIKE %s ORDER BY id",
            [path_prefix + "%"],
        ).fetchall()


def _every_control_is_labelled(page: str) -> None:
    for control in re.findall(
        r'<(?:select|textarea|input)(?![^>]*type="hidden")[^>]*\sid="([^"]+)"', page
    ):
        assert f'for="{control}"' in page, control


def test_an_admin_registers_a_device_assigns_it_takes_it_back_and_retires_it(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient, other = clinic.first.patient("MRN-A1"), clinic.second.patient("MRN-B1")
    browser_sign_in(ui_client, "admin-1")
    htmx = _htmx(db_url)

    empty = ui_client.get("/ui/devices")
    assert empty.status_code == 200
    assert '<a href="/ui/devices" aria-current="page">Devices</a>' in empty.text
    assert "No devices are registered yet." in empty.text
    _every_control_is_labelled(empty.text)
    # A dead letter's page links here for a device not yet known, its serial filled in.
    prefilled = ui_client.get("/ui/devices", params={"serial": "BP-NEW"}).text
    assert 'name="serial" value="BP-NEW"' in prefilled

    form = {"serial": " BP-UI-1 ", "kind": "blood_pressure_cuff", "model": "Test cuff"}
    registered = ui_client.post("/ui/devices", data=form, headers=htmx)
    assert registered.status_code == 200
    assert registered.headers["HX-Redirect"] == "/ui/devices/BP-UI-1"
    taken = ui_client.post("/ui/devices", data=form, headers=htmx)
    assert taken.status_code == 409
    assert taken.text.startswith('<section id="register-device"')
    assert "A device with serial &#39;BP-UI-1&#39; is already registered." in taken.text
    assert 'value="BP-UI-1"' in taken.text  # what was entered stays
    malformed = ui_client.post("/ui/devices", data=form | {"serial": "a b"}, headers=htmx)
    assert malformed.status_code == 422
    assert "must be 1 to 64 letters, digits or . _ : -" in malformed.text

    page = ui_client.get("/ui/devices/BP-UI-1")
    assert page.status_code == 200
    assert "<h1>Device BP-UI-1</h1>" in page.text
    assert "Device BP-UI-1 has not been assigned to a patient yet." in page.text
    assert 'href="/ui/dead-letters?device_serial=BP-UI-1"' in page.text
    _every_control_is_labelled(page.text)

    def act(action: str, **fields: object) -> tuple[int, str]:
        response = ui_client.post(f"/ui/devices/BP-UI-1/{action}", data=fields, headers=htmx)
        return response.status_code, response.text

    status, section = act("assign", patient_id=999999)
    assert status == 404
    assert section.startswith('<section id="device"')
    assert 'role="alert" tabindex="-1" autofocus>No patient with id 999999.</p>' in section
    status, section = act("assign", patient_id=patient, at="2026-01-05T08:00")
    assert status == 200
    assert f"Device BP-UI-1 is now patient {patient}&#39;s, from 2026-01-05 08:00 UTC." in section
    status, section = act("assign", patient_id=other, at="2026-01-05T07:00")
    assert status == 409
    assert "current assignment starts at 2026-01-05T08:00:00+00:00" in section
    assert act("assign", patient_id=other, at="5 January")[0] == 422
    status, section = act("assign", patient_id=other, at="2026-02-01T00:00")
    assert status == 200
    status, section = act("unassign")
    assert "Device BP-UI-1 is no longer assigned to a patient." in section
    status, section = act("unassign")
    assert status == 409
    assert "Device BP-UI-1 is not assigned to a patient." in section
    # Newest first: the one that ended now on top, then the first.
    periods = re.findall(r"<td>Patient (\d+)</td>", section)
    assert periods == [str(other), str(patient)]

    unconfirmed = ui_client.post("/ui/devices/BP-UI-1/deactivate", headers=htmx)
    assert unconfirmed.status_code == 422
    assert unconfirmed.text == "tick the box to confirm that device BP-UI-1 is to be deactivated"
    status, section = act("deactivate", confirm="true")
    assert status == 200
    assert "Device BP-UI-1 is deactivated: its messages are dead-lettered from now on." in section
    assert '/assign"' not in section  # a retired device is given to nobody
    status, section = act("assign", patient_id=patient)
    assert status == 409
    assert "Device BP-UI-1 is deactivated; it cannot be assigned." in section

    listed = ui_client.get("/ui/devices").text
    row = re.search(r"<tr>\s*<th scope=\"row\">.*?BP-UI-1.*?</tr>", listed, re.S)
    assert row is not None
    for shown in ("Blood pressure cuff", "Test cuff", "Inactive", "Unassigned", "Never"):
        assert shown in row.group(0)


def test_device_assignments_are_audited_as_the_apis_are(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    api = api_call_through(ui_client, bearer(ui_client, "admin-1", TEST_PASSWORD))
    browser_sign_in(ui_client, "admin-1")
    htmx = _htmx(db_url)
    for serial in ("BP-API", "BP-UI"):
        api("POST", "/api/v1/devices", {"serial": serial, "kind": "blood_pressure_cuff"})

    api("POST", "/api/v1/devices/BP-API/assign", {"patient_id": patient})
    api("POST", "/api/v1/devices/BP-API/unassign", {})
    for action, form in (("assign", {"patient_id": patient}), ("unassign", {})):
        response = ui_client.post(f"/ui/devices/BP-UI/{action}", data=form, headers=htmx)
        assert response.status_code == 200, response.text

    by_api = _audit_rows(db_url, "/api/v1/devices/")
    by_page = _audit_rows(db_url, "/ui/devices/")
    assert [row[:2] + row[3:] for row in by_page] == [row[:2] + row[3:] for row in by_api]
    assert [row[:4] for row in by_page] == [
        ("assign", "device", "BP-UI", patient),
        ("unassign", "device", "BP-UI", patient),
    ]


def test_plain_form_posts_go_back_to_the_device_or_say_why_not(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    browser_sign_in(ui_client, "admin-1")
    token = {"csrf_token": browser_csrf(db_url, "admin-1")}
    registered = ui_client.post(
        "/ui/devices",
        data=token | {"serial": "SC-1", "kind": "weight_scale"},
        follow_redirects=False,
    )
    assert registered.status_code == 303
    assert registered.headers["Location"] == "/ui/devices/SC-1"
    assigned = ui_client.post(
        "/ui/devices/SC-1/assign", data=token | {"patient_id": patient}, follow_redirects=False
    )
    assert assigned.status_code == 303
    assert assigned.headers["Location"] == "/ui/devices/SC-1"
    refused = ui_client.post("/ui/devices/SC-1/assign", data=token | {"patient_id": 999999})
    assert refused.status_code == 404
    assert "<h1>That did not work</h1>" in refused.text
    assert "No patient with id 999999." in refused.text
    missing = ui_client.get("/ui/devices/NOPE-1")
    assert missing.status_code == 404
    assert "No device with serial &#39;NOPE-1&#39; is registered." in missing.text
    unsafe = ui_client.post("/ui/devices/SC-1/unassign")  # no CSRF token
    assert unsafe.status_code == 403


def test_the_device_list_is_paged_in_serial_order(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device (serial, kind, battery_percent, last_seen_at)"
            " SELECT 'GL-' || lpad(n::text, 3, '0'), 'glucometer', 80, now() - interval '2 hours'"
            " FROM generate_series(1, 30) AS n"
        )
    browser_sign_in(ui_client, "admin-1")
    first = ui_client.get("/ui/devices").text
    serials = re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', first)
    assert serials == [f"GL-{n:03}" for n in range(1, 26)]
    assert "80 %" in first
    assert "2 h ago" in first
    link = re.search(r'<a href="(/ui/devices\?after=[^"]+)">Next page</a>', first)
    assert link is not None
    second = ui_client.get(link.group(1)).text
    assert re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', second) == [
        f"GL-{n:03}" for n in range(26, 31)
    ]
    assert '<a href="/ui/devices">First page</a>' in second
    assert "Next page" not in second


@pytest.mark.parametrize(("username", "role"), [("nurse-1", "nurse"), ("cm-1", "care_manager")])
def test_nurses_and_care_managers_neither_see_nor_reach_the_admin_pages(
    ui_client: TestClient, db_url: str, clinic: Clinic, username: str, role: str
) -> None:
    if role == "care_manager":
        staff = clinic.first.staff("cm-1", "Care Manager One", role)
        add_user(db_url, username, role, TEST_PASSWORD, staff)
    browser_sign_in(ui_client, username)
    worklist = ui_client.get("/ui/worklist").text
    assert "/ui/devices" not in worklist

    refused = ui_client.get("/ui/devices")
    assert refused.status_code == 403
    assert f"A user with the role {role} may not manage devices." in refused.text
    for path in ("/ui/devices/BP-1", "/ui/devices/BP-1/assign"):
        method = "POST" if path.endswith("assign") else "GET"
        response = ui_client.request(method, path, headers=_htmx(db_url, username))
        assert response.status_code == 403, path
    with psycopg.connect(db_url) as conn:
        denied = conn.execute(
            "SELECT resource, path, status FROM audit_event"
            " WHERE username = %s AND action = 'denied' ORDER BY id",
            [username],
        ).fetchall()
    assert denied == [
        ("manage_devices", "/ui/devices", 403),
        ("manage_devices", "/ui/devices/BP-1", 403),
        ("manage_devices", "/ui/devices/BP-1/assign", 403),
    ]
