"""The admin pages against the real service: devices (register, assign, take back,
retire; the assignment history) and dead letters (filter, inspect, replay one or all that
match); each refusal in the API's words, the audit rows the API's routes write, and
nurses and care managers refused and not shown the pages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import (
    TEST_PASSWORD,
    add_user,
    api_call_through,
    assert_every_control_is_labelled,
    bearer,
    browser_csrf,
    browser_sign_in,
    receive,
)

# When the dead-lettered messages arrived: two hours ago.
SENT_AT = datetime.now(UTC) - timedelta(hours=2)


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


def _dead_letter(client: TestClient, db_url: str, payload: bytes, serial: str = "GHOST") -> int:
    """A message from this device, dead-lettered as it arrived two hours ago: its id."""
    receive(client, f"rpm/v1/devices/{serial}/readings", payload, SENT_AT)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT max(id) FROM rejected_message").fetchone()
    assert row is not None
    return int(row[0])


def _backlog(minutes_ago: tuple[int, ...]) -> bytes:
    """Blood-pressure readings taken that long before the message arrived."""
    return json.dumps(
        [
            {
                "kind": "blood_pressure",
                "measured_at": (SENT_AT - timedelta(minutes=m)).isoformat(),
                "systolic": 128,
                "diastolic": 82,
                "unit": "mmHg",
            }
            for m in minutes_ago
        ]
    ).encode()


def _listed(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="dead-letter-(\d+)">', page)]


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
    assert_every_control_is_labelled(empty.text)
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
    assert_every_control_is_labelled(page.text)

    def act(action: str, **fields: object) -> tuple[int, str]:
        response = ui_client.post(f"/ui/devices/BP-UI-1/{action}", data=fields, headers=htmx)
        return response.status_code, response.text

    status, section = act("assign", patient_id=999999)
    assert status == 404
    assert section.startswith('<section id="device"')
    assert 'role="alert" tabindex="-1" autofocus>No patient with id 999999.</p>' in section
    status, section = act("assign", patient_id=patient, at="2026-01-05T08:00")
    assert status == 200
    # An admin with no staff record reads the service's clock (RPM_TIME_ZONE: UTC here).
    said = f"Device BP-UI-1 is now patient {patient}&#39;s, from Mon 5 Jan 2026, 08:00 UTC."
    assert said in section
    status, section = act("assign", patient_id=other, at="2026-01-05T07:00")
    assert status == 409
    assert "current assignment starts at Mon 5 Jan 2026, 08:00 UTC" in section
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
    row = re.search(
        r"<tr>\s*<th scope=\"row\" class=\"nowrap card-title\">.*?BP-UI-1.*?</tr>", listed, re.S
    )
    assert row is not None
    for shown in ("Blood pressure cuff", "Test cuff", "Inactive", "Unassigned", "Never"):
        assert shown in row.group(0)


def test_a_time_outside_the_years_1_to_9999_in_utc_is_refused_in_words(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    """As the API's `Instant` refuses it: stored, it could not be read back."""
    patient = clinic.first.patient("MRN-A1")
    browser_sign_in(ui_client, "admin-1")
    htmx = _htmx(db_url)
    form = {"serial": "BP-EDGE", "kind": "blood_pressure_cuff"}
    assert ui_client.post("/ui/devices", data=form, headers=htmx).status_code == 200

    def refused(action: str, **fields: object) -> None:
        response = ui_client.post(f"/ui/devices/BP-EDGE/{action}", data=fields, headers=htmx)
        assert response.status_code == 422, response.text
        assert response.text.endswith(": the time must fall within the years 1 to 9999 in UTC")
        assert str(fields["at"]) in response.text

    refused("assign", patient_id=patient, at="0001-01-01T00:00+05:00")
    page = ui_client.get("/ui/devices/BP-EDGE")
    assert "Device BP-EDGE has not been assigned to a patient yet." in page.text
    assigned = ui_client.post(
        "/ui/devices/BP-EDGE/assign", data={"patient_id": patient}, headers=htmx
    )
    assert assigned.status_code == 200
    refused("unassign", at="9999-12-31T23:00-05:00")
    # Nothing was stored: the assignment still runs, and the page reads.
    page = ui_client.get("/ui/devices/BP-EDGE")
    assert page.status_code == 200
    assert re.search(r"<td>Patient \d+</td>", page.text)


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

    # The changes (a page also reads the device it shows again, audited as reads are).
    by_api = [row for row in _audit_rows(db_url, "/api/v1/devices/") if row[0] != "read"]
    by_page = [row for row in _audit_rows(db_url, "/ui/devices/") if row[0] != "read"]
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
    serials = re.findall(
        r'<th scope="row" class="nowrap card-title"><a href="[^"]+">([^<]+)</a>', first
    )
    assert serials == [f"GL-{n:03}" for n in range(1, 26)]
    assert "80 %" in first
    assert "2 h ago" in first
    link = re.search(r'<a href="(/ui/devices\?after=[^"]+)">Next page</a>', first)
    assert link is not None
    second = ui_client.get(link.group(1)).text
    assert re.findall(
        r'<th scope="row" class="nowrap card-title"><a href="[^"]+">([^<]+)</a>', second
    ) == [f"GL-{n:03}" for n in range(26, 31)]
    assert '<a href="/ui/devices">First page</a>' in second
    assert "Next page" not in second


@pytest.mark.parametrize(("username", "role"), [("nurse-1", "nurse"), ("cm-1", "care_manager")])
def test_nurses_and_care_managers_neither_see_nor_reach_the_admin_pages(
    ui_client: TestClient, db_url: str, clinic: Clinic, username: str, role: str
) -> None:
    if role == "care_manager":
        staff = clinic.first.staff("cm-1", "Care Manager One", role)
        add_user(db_url, username, role, TEST_PASSWORD, staff)
    letter = _dead_letter(ui_client, db_url, b"{")
    browser_sign_in(ui_client, username)
    worklist = ui_client.get("/ui/worklist").text
    assert "/ui/devices" not in worklist
    assert "/ui/dead-letters" not in worklist

    devices = ui_client.get("/ui/devices")
    assert devices.status_code == 403
    assert f"A user with the role {role} may not manage devices." in devices.text
    letters = ui_client.get("/ui/dead-letters")
    assert letters.status_code == 403
    assert f"A user with the role {role} may not read or replay rejected messages." in letters.text
    attempts = [
        ("GET", "/ui/devices/BP-1"),
        ("POST", "/ui/devices/BP-1/assign"),
        ("GET", f"/ui/dead-letters/{letter}"),
        ("POST", f"/ui/dead-letters/{letter}/replay"),
        ("POST", "/ui/dead-letters/replay"),
    ]
    for method, path in attempts:
        response = ui_client.request(method, path, headers=_htmx(db_url, username))
        assert response.status_code == 403, path
    with psycopg.connect(db_url) as conn:
        denied = conn.execute(
            "SELECT resource, path FROM audit_event"
            " WHERE username = %s AND action = 'denied' AND status = 403 ORDER BY id",
            [username],
        ).fetchall()
        replayed = conn.execute("SELECT replayed_at FROM rejected_message").fetchall()
    devices_denied, letters_denied = "manage_devices", "manage_dead_letters"
    assert denied == [
        (devices_denied, "/ui/devices"),
        (letters_denied, "/ui/dead-letters"),
        *[(devices_denied if "devices" in p else letters_denied, p) for _, p in attempts],
    ]
    assert replayed == [(None,)]


def test_an_admin_filters_inspects_and_replays_dead_letters_after_assigning_the_device(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    browser_sign_in(ui_client, "admin-1")
    htmx = _htmx(db_url)
    form = {"serial": "BP-7", "kind": "blood_pressure_cuff"}
    assert ui_client.post("/ui/devices", data=form, headers=htmx).status_code == 200
    backlog = _dead_letter(ui_client, db_url, _backlog((30, 20)), "BP-7")
    binary = _dead_letter(ui_client, db_url, b"\xff\xfe not json", "BP-7")
    markup = _dead_letter(ui_client, db_url, b'<script>alert("x")</script>')

    page = ui_client.get("/ui/dead-letters")
    assert page.status_code == 200
    assert '<a href="/ui/dead-letters" aria-current="page">Dead letters</a>' in page.text
    assert _listed(page.text) == [markup, binary, backlog]
    assert "3 pending dead letters, newest first" in page.text
    assert "choose a reason or a device serial first" in page.text  # no replay of all
    assert_every_control_is_labelled(page.text)
    by_reason = ui_client.get("/ui/dead-letters", params={"reason": "unassigned_device"})
    assert _listed(by_reason.text) == [backlog]
    by_device = ui_client.get("/ui/dead-letters", params={"device_serial": " BP-7 "})
    assert _listed(by_device.text) == [binary, backlog]
    assert "Replay all that match" in by_device.text
    assert_every_control_is_labelled(by_device.text)
    assert ui_client.get("/ui/dead-letters", params={"reason": "bogus"}).status_code == 422

    # The payload is data, never markup: escaped as text, or in hex when not UTF-8 text.
    shown = ui_client.get(f"/ui/dead-letters/{markup}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in shown
    assert "<script>alert" not in shown
    assert "As text (UTF-8)." in shown
    assert 'GHOST, not registered: <a href="/ui/devices?serial=GHOST#register-device">' in shown
    hex_page = ui_client.get(f"/ui/dead-letters/{binary}").text
    assert "In hex, because they are not UTF-8 text." in hex_page
    assert "00000000  ff fe 20 6e 6f 74 20 6a  73 6f 6e" in hex_page
    waiting = ui_client.get(f"/ui/dead-letters/{backlog}").text
    assert "assign it, then replay this message" in waiting
    assert '<a href="/ui/devices/BP-7">BP-7</a>' in waiting
    assert f"Replay dead letter {backlog}" in waiting

    # The cuff was the patient's since the day before the readings were taken.
    since = (SENT_AT - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assign = {"patient_id": patient, "at": since}
    assert ui_client.post("/ui/devices/BP-7/assign", data=assign, headers=htmx).status_code == 200
    replayed = ui_client.post(f"/ui/dead-letters/{backlog}/replay", headers=htmx)
    assert replayed.status_code == 200
    assert replayed.text.startswith('<section id="replay"')
    assert "Replayed just now: Stored 2 reading(s), 0 already stored." in replayed.text
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT patient_id, count(*) FROM reading GROUP BY 1").fetchall()
    assert stored == [(patient, 2)]
    again = ui_client.post(f"/ui/dead-letters/{backlog}/replay", headers=htmx)
    assert again.status_code == 409
    assert f"Dead letter {backlog} was already replayed;" in again.text
    later = ui_client.get(f"/ui/dead-letters/{backlog}").text
    assert "Stored 2 reading(s), 0 already stored." in later
    assert "Replay dead letter" not in later

    pending = ui_client.get("/ui/dead-letters", params={"device_serial": "BP-7"}).text
    assert _listed(pending) == [binary]
    everything = ui_client.get(
        "/ui/dead-letters", params={"device_serial": "BP-7", "include_replayed": "true"}
    ).text
    assert _listed(everything) == [binary, backlog]
    assert "stored 2 reading(s), 0 already stored" in everything


def test_replaying_all_that_match_is_confirmed_limited_and_says_each_outcome(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    first, second, third = (_dead_letter(ui_client, db_url, b"{" * n) for n in (1, 2, 3))
    other = _dead_letter(ui_client, db_url, b"{", "BP-OTHER")
    browser_sign_in(ui_client, "admin-1")
    htmx = _htmx(db_url)
    form = {"device_serial": "GHOST", "limit": "2", "confirm": "true"}

    unconfirmed = ui_client.post(
        "/ui/dead-letters/replay", data=form | {"confirm": ""}, headers=htmx
    )
    assert unconfirmed.status_code == 422
    assert unconfirmed.text == "tick the box to confirm the replay"
    everything = ui_client.post(
        "/ui/dead-letters/replay", data=form | {"device_serial": ""}, headers=htmx
    )
    assert everything.status_code == 422
    assert "replaying every dead letter at once is not offered" in everything.text
    too_many = ui_client.post(
        "/ui/dead-letters/replay", data=form | {"limit": "1001"}, headers=htmx
    )
    assert too_many.status_code == 422

    # The oldest two of GHOST's: each fails again (still unknown), and says where it went.
    replayed = ui_client.post("/ui/dead-letters/replay", data=form, headers=htmx)
    assert replayed.status_code == 200
    assert replayed.text.startswith('<section id="dead-letters"')
    assert "Replayed 2 dead letters: 0 went through, 2 failed again." in replayed.text
    again = re.findall(
        r"see dead letter (\d+) \(<a href=\"/ui/dead-letters/(\d+)\">open it", replayed.text
    )
    assert len(again) == 2
    assert all(said == linked for said, linked in again)
    for replayed_id in (first, second):
        assert f">Dead letter {replayed_id}</a>: stored 0 reading(s)" in replayed.text
    # The list under it, as it now stands: the two new ones and the one left.
    new_ids = sorted(int(said) for said, _ in again)
    assert _listed(replayed.text) == [*new_ids[::-1], third]
    assert other not in _listed(replayed.text)

    nothing = ui_client.post(
        "/ui/dead-letters/replay", data=form | {"reason": "unit"}, headers=htmx
    )
    assert "No pending dead letter matched: nothing was replayed." in nothing.text


def test_dead_letter_reads_and_replays_are_audited_as_the_apis_are(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    api = api_call_through(ui_client, bearer(ui_client, "admin-1", TEST_PASSWORD))
    browser_sign_in(ui_client, "admin-1")
    htmx = _htmx(db_url)
    by_api, by_page = (
        _dead_letter(ui_client, db_url, b"{", "GHOST-A"),
        _dead_letter(ui_client, db_url, b"{", "GHOST-B"),
    )

    api("GET", f"/api/v1/dead-letters/{by_api}", None)
    api("POST", f"/api/v1/dead-letters/{by_api}/replay", None)
    api("POST", "/api/v1/dead-letters/replay", {"device_serial": "GHOST-A"})
    assert ui_client.get(f"/ui/dead-letters/{by_page}").status_code == 200
    assert ui_client.post(f"/ui/dead-letters/{by_page}/replay", headers=htmx).status_code == 200
    form = {"device_serial": "GHOST-B", "confirm": "true"}
    assert ui_client.post("/ui/dead-letters/replay", data=form, headers=htmx).status_code == 200

    # Leaving out the list the page shows again after a replay (a read of its own).
    api_rows = _audit_rows(db_url, "/api/v1/dead-letters")
    page_rows = [
        row
        for row in _audit_rows(db_url, "/ui/dead-letters")
        if row[:2] != ("read", "dead_letters")
    ]
    assert [row[:3] for row in page_rows] == [
        ("read", "dead_letter", str(by_page)),
        ("replay", "dead_letter", str(by_page)),
        ("replay", "dead_letters", None),
    ]

    # The same rows as the API's, but for the ids.
    def shape(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(a, r, patient, status, sorted(d)) for a, r, _, patient, status, d in rows]

    assert shape(page_rows) == shape(api_rows)
    failed_again = page_rows[1][5]["result"]
    assert failed_again.startswith("stored 0 reading(s), 0 already stored; failed again")
    new_id = int(failed_again.rsplit(" ", 1)[1])
    assert page_rows[2][5] == {"ids": [new_id]}


def test_dead_letters_are_paged_newest_first_and_plain_form_posts_work(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO rejected_message"
            " (received_at, source, topic, device_serial, payload, reason, detail)"
            " SELECT now() - n * interval '1 minute', 'mqtt', 'rpm/v1/devices/GL-1/readings',"
            " 'GL-1', convert_to('{' || n, 'UTF8'), 'malformed_json', 'not valid JSON'"
            " FROM generate_series(1, 30) AS n"
        )
    browser_sign_in(ui_client, "admin-1")
    first = ui_client.get("/ui/dead-letters", params={"device_serial": "GL-1"}).text
    assert _listed(first) == list(range(30, 5, -1))
    older = re.search(r'<a href="(/ui/dead-letters\?[^"]+)">Older</a>', first)
    assert older is not None
    second = ui_client.get(older.group(1).replace("&amp;", "&")).text
    assert _listed(second) == [5, 4, 3, 2, 1]
    assert '<a href="/ui/dead-letters?device_serial=GL-1">Newest</a>' in second
    assert "Older" not in second

    token = {"csrf_token": browser_csrf(db_url, "admin-1")}
    replayed = ui_client.post("/ui/dead-letters/1/replay", data=token, follow_redirects=False)
    assert replayed.status_code == 303
    assert replayed.headers["Location"] == "/ui/dead-letters/1"
    shown = ui_client.get("/ui/dead-letters/1").text
    assert re.search(r"Replayed <time [^>]+>[^<]+</time>: Stored 0 reading\(s\)", shown)
    twice = ui_client.post("/ui/dead-letters/1/replay", data=token)
    assert twice.status_code == 409
    assert "<h1>That did not work</h1>" in twice.text
    assert "Dead letter 1 was already replayed;" in twice.text

    form = token | {"device_serial": "GL-1", "limit": "3", "confirm": "true"}
    all_matching = ui_client.post("/ui/dead-letters/replay", data=form)
    assert all_matching.status_code == 200
    assert "<h1>Dead letters</h1>" in all_matching.text
    assert "Replayed 3 dead letters: 0 went through, 3 failed again." in all_matching.text
