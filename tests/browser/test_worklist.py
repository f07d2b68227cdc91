"""A nurse at the worklist in a real browser: signs in, acknowledges then resolves an
alert, sees a new one appear by itself when a crisis reading arrives over MQTT; the page
at tablet width and by keyboard; signed out after the idle timeout, and told so."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import paho.mqtt.publish as mqtt_publish
import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, OpenPage, RunningRpm, sign_in
from tests.support import TEST_PASSWORD, Ward, add_alert, add_user

pytestmark = pytest.mark.browser


def _ward(rpm: RunningRpm) -> Ward:
    """Team A, with nurse-1 (who signs in) and a colleague."""
    ward = Ward.open(rpm.admin, "Team A")
    nurse = ward.staff("nurse-1", "Nurse One")
    ward.staff("nurse-2", "Nurse Two")
    add_user(rpm.database_url, "nurse-1", "nurse", TEST_PASSWORD, nurse)
    return ward


def _crisis_reading(rpm: RunningRpm, patient_id: int, serial: str) -> None:
    """A cuff of the patient's sends 186/124 over MQTT, as a device does."""
    rpm.admin("POST", "/api/v1/devices", {"serial": serial, "kind": "blood_pressure_cuff"})
    rpm.admin("POST", f"/api/v1/devices/{serial}/assign", {"patient_id": patient_id})
    reading = {
        "kind": "blood_pressure",
        "measured_at": datetime.now(UTC).isoformat(),
        "systolic": 186,
        "diastolic": 124,
        "pulse": 88,
        "unit": "mmHg",
    }
    mqtt_publish.single(
        f"rpm/v1/devices/{serial}/readings",
        json.dumps(reading),
        qos=1,
        hostname="127.0.0.1",
        port=rpm.broker_port,
    )


def test_a_nurse_signs_in_triages_an_alert_and_sees_a_new_one_arrive(
    rpm: RunningRpm, open_page: OpenPage
) -> None:
    ward = _ward(rpm)
    patient = ward.patient("MRN-1001")
    alert = add_alert(rpm.database_url, patient, "bp_crisis", "critical", "BP 182/121: crisis")
    shown = open_page(1280)
    page = shown.page

    page.goto(f"{rpm.url}/ui/")
    shown.screenshot("1-sign-in")
    sign_in(page, rpm, "nurse-1")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    row = page.locator(f"#alert-{alert}")
    expect(row).to_contain_text("MRN-1001")
    expect(row).to_contain_text("BP 182/121: crisis")
    expect(row).to_contain_text("Critical")
    shown.screenshot("2-worklist")

    # One click, by the button's accessible name (which says which alert).
    page.get_by_role("button", name="Acknowledge alert").click()
    expect(row).to_contain_text("Acknowledged by nurse-1")
    expect(row).to_contain_text("Assigned to Nurse One")
    shown.screenshot("3-acknowledged")

    row.get_by_text("Resolve", exact=False).first.click()
    row.get_by_label("Outcome").select_option("patient_contacted")
    row.get_by_label("Note: what was done").fill("Called; re-measured 142/88.")
    shown.screenshot("4-resolving")
    row.get_by_role("button", name="Resolve", exact=True).click()
    expect(row).to_contain_text("Resolved by nurse-1 (patient contacted)")
    shown.screenshot("5-resolved")

    # Another patient's cuff sends a crisis reading: the rule engine opens an alert, and
    # the page shows it without being asked.
    other = ward.patient("MRN-1002")
    _crisis_reading(rpm, other, "BP-BROWSER-1")
    new_row = page.locator("#worklist tbody tr", has_text="MRN-1002")
    expect(new_row).to_be_visible(timeout=20_000)
    expect(new_row).to_contain_text("Critical")
    expect(row).to_have_count(0)  # the resolved one has left the list
    expect(page.locator("#status-message")).to_contain_text("The worklist has changed")
    shown.screenshot("6-new-alert-live")
    assert shown.errors == []


def test_the_worklist_at_tablet_width_and_by_keyboard(rpm: RunningRpm, open_page: OpenPage) -> None:
    ward = _ward(rpm)
    for n, severity in enumerate(("critical", "high", "warning")):
        add_alert(
            rpm.database_url,
            ward.patient(f"MRN-20{n}"),
            f"rule-{n}",
            severity,
            "Systolic 150-159 on 3 of the last 4 readings, above the plan's limit of 150",
        )
    shown = open_page(768)
    page = shown.page
    sign_in(page, rpm, "nurse-1")
    expect(page.locator("#worklist tbody tr")).to_have_count(3)
    # Nothing wider than the screen: no sideways scrolling of the page or of the table.
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth,"
        " document.querySelector('.table-scroll').scrollWidth,"
        " document.querySelector('.table-scroll').clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    assert widths[2] <= widths[3], widths
    shown.screenshot("1-tablet")

    # The first Tab reaches the skip link, which takes the keyboard past the header.
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to main content")
    page.keyboard.press("Enter")
    expect(page.locator(":focus")).to_have_id("main")
    # Onwards by Tab to the first Acknowledge, and act on it with Enter.
    for _ in range(20):
        page.keyboard.press("Tab")
        if re.match(r"acknowledge-\d+", page.evaluate("document.activeElement.id")):
            break
    focused = page.locator(":focus")
    expect(focused).to_contain_text("Acknowledge")
    # The focus ring is visible: an outline of a few pixels.
    assert page.evaluate("getComputedStyle(document.activeElement).outlineWidth") == "3px"
    shown.screenshot("2-keyboard-focus")
    page.keyboard.press("Enter")
    expect(page.locator("#worklist tbody tr").first).to_contain_text("Acknowledged by nurse-1")
    # The keyboard stays in the row it acted on (the button is gone with the state).
    assert page.evaluate("document.activeElement.closest('tr') !== null")
    expect(page.locator(":focus")).to_contain_text("Assign")
    shown.screenshot("3-keyboard-acknowledged")
    assert shown.errors == []


def _idle(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE auth_session SET last_used_at = now() - interval '16 minutes'")


def test_an_idle_page_is_signed_out_and_says_why(rpm: RunningRpm, open_page: OpenPage) -> None:
    ward = _ward(rpm)
    patient = ward.patient("MRN-3001")
    shown: BrowserPage = open_page(1280)
    page = shown.page
    sign_in(page, rpm, "nurse-1")
    expect(page.get_by_text("No unresolved alerts.")).to_be_visible()

    # Fifteen minutes pass with nobody at the screen; then an alert comes. The page's
    # re-read is refused, and the page leaves for the sign-in form: no patient data left
    # on an unattended screen.
    _idle(rpm.database_url)
    add_alert(rpm.database_url, patient, "bp_crisis", "critical")
    expect(page).to_have_url(f"{rpm.url}/ui/login?ended=idle", timeout=20_000)
    expect(
        page.get_by_text("You were signed out after 15 minutes without activity.")
    ).to_be_visible()
    shown.screenshot("1-signed-out")
    assert shown.errors == []
