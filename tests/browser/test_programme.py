"""A care manager runs the programme in a real browser, at a phone's width and a desk's:
enrols a patient from the form and edits the missed-readings rule of their plan, saved
as a new version; nothing scrolls sideways. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import paho.mqtt.publish as mqtt_publish
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, RunningRpm, sign_in
from tests.support import TEST_PASSWORD, Ward, add_user

pytestmark = pytest.mark.browser


def _no_sideways_scroll(page: Page) -> None:
    wide = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert wide[0] <= wide[1], f"the page is {wide[0]} px wide at {wide[1]}"


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
def test_a_care_manager_enrols_then_edits_the_missed_readings_rule(
    rpm: RunningRpm, open_page: OpenPage, width: int, height: int
) -> None:
    ward = Ward.open(rpm.admin, "Team A")
    manager = ward.staff("manager-1", "Care Manager One", role="care_manager")
    add_user(rpm.database_url, "manager-1", "care_manager", TEST_PASSWORD, manager)
    shown = open_page(width, height)
    page = shown.page
    sign_in(page, rpm, "manager-1")

    page.goto(f"{rpm.url}/ui/patients")
    page.get_by_role("link", name="Enrol a patient").click()
    page.get_by_label("Clinic reference").fill("MRN-3001")
    page.get_by_label("Given name").fill("Test")
    page.get_by_label("Family name").fill("Patient")
    page.get_by_label("Time zone where the patient lives").fill("America/Chicago")
    page.get_by_label("Hypertension (AHA)", exact=True).check()
    _no_sideways_scroll(page)
    shown.screenshot(f"enrol-{width}")
    page.get_by_role("button", name="Enrol").click()
    expect(page.get_by_role("status").filter(has_text="Enrolled.")).to_be_visible()
    _no_sideways_scroll(page)
    shown.screenshot(f"enrolled-{width}")

    page.get_by_role("link", name="Version 1").click()
    rule = page.locator("#rule-missed_readings")
    rule.get_by_label("Whole days without one").fill("5")
    rule.get_by_label("Severity").select_option("high")
    page.get_by_label("Why the change (kept with the version)").fill("Readings every few days")
    _no_sideways_scroll(page)
    shown.screenshot(f"missed-rule-{width}")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_have_text(
        "Saved: the care plan is now at version 2."
    )
    expect(page.locator("#last-change")).to_contain_text("missed_readings: days 3 → 5")
    _no_sideways_scroll(page)
    shown.screenshot(f"missed-rule-saved-{width}")
    assert shown.errors == []


def test_enrol_to_first_alert(rpm: RunningRpm, open_page: OpenPage) -> None:
    """Issue 18's "done when": from a database holding only the first admin (the `rpm`
    fixture adds it as `rpm users add` does), all in the browser. The admin creates the
    care team, adds its nurse and care manager and gives them sign-ins; the care manager
    puts the nurse on call, enrols a patient and gives a plan from a template with its
    preview; the admin registers a cuff and gives it; a crisis reading over MQTT becomes
    an alert, and the nurse on a phone acknowledges it."""
    admin = open_page(1280, 800)
    sign_in(admin.page, rpm, "admin-1")
    admin.page.get_by_role("link", name="Teams", exact=True).click()
    admin.page.get_by_label("Name").fill("Team A")
    admin.page.get_by_role("button", name="Create team").click()
    expect(admin.page.get_by_role("status")).to_contain_text("Care team created")
    for name, username, role in (
        ("Care Manager One", "manager-1", "care_manager"),
        ("Nurse One", "nurse-1", "nurse"),
    ):
        admin.page.get_by_label("Name as the team knows them").fill(name)
        admin.page.get_by_label("Username", exact=True).fill(username)
        admin.page.get_by_label("Role", exact=True).select_option(role)
        admin.page.get_by_label("Their time zone").fill("America/Chicago")
        admin.page.get_by_role("button", name="Add staff member").click()
        expect(admin.page.get_by_role("status")).to_contain_text("Staff member added")
    admin.screenshot("team-1280")
    admin.page.get_by_role("link", name="Staff", exact=True).click()
    for username in ("manager-1", "nurse-1"):
        admin.page.get_by_label(f"Password for {username}").fill(TEST_PASSWORD)
        admin.page.get_by_role("button", name="Give a sign-in").first.click()
        expect(admin.page.get_by_role("status")).to_contain_text("Sign-in given")
    admin.screenshot("staff-1280")

    desk = open_page(1280, 800)
    page = desk.page
    sign_in(page, rpm, "manager-1")
    page.get_by_role("link", name="Teams", exact=True).click()
    page.get_by_role("link", name="Team A").click()
    now = datetime.now(ZoneInfo("America/Chicago"))
    page.get_by_label("Who", exact=True).select_option(label="Nurse One (nurse), no mobile: no SMS")
    for label, at in (("From", now - timedelta(hours=1)), ("To", now + timedelta(hours=11))):
        page.get_by_label(label, exact=True).fill(at.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Add shift").click()
    expect(page.get_by_role("status")).to_contain_text("Shift added to the rota.")
    expect(page.locator(".facts")).to_contain_text("Nurse One")
    desk.screenshot("rota-1280")
    page.goto(f"{rpm.url}/ui/patients/new")
    page.get_by_label("Clinic reference").fill("MRN-4001")
    page.get_by_label("Given name").fill("Test")
    page.get_by_label("Family name").fill("Patient")
    page.get_by_label("Time zone where the patient lives").fill("America/Chicago")
    page.get_by_role("button", name="Enrol").click()
    expect(page.get_by_role("status").filter(has_text="Enrolled.")).to_be_visible()
    patient = int(page.url.split("/ui/patients/")[1].split("?")[0])
    page.get_by_role("link", name="care-plan page").click()
    page.get_by_label("Hypertension (AHA)", exact=True).check()
    page.get_by_role("button", name="Preview the templates' plan").click()
    expect(page.locator("#template-preview")).to_contain_text("Preview, not saved")
    page.get_by_label("Why (kept with the version)").fill("Enrolled at clinic")
    desk.screenshot("first-plan-1280")
    page.get_by_role("button", name="Save the templates' plan as version 1").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()

    admin.page.goto(f"{rpm.url}/ui/devices")
    admin.page.get_by_label("Serial").fill("BP-4001")
    admin.page.get_by_role("button", name="Register").click()
    expect(admin.page.get_by_role("heading", name="BP-4001")).to_be_visible()
    admin.page.goto(f"{rpm.url}/ui/patients/{patient}")
    admin.page.get_by_label("Give a registered device").select_option("BP-4001")
    admin.page.get_by_role("button", name="Give this device").click()
    expect(admin.page.get_by_text("Device BP-4001 is now this patient's.")).to_be_visible()
    admin.screenshot("device-given-1280")

    reading = {
        "kind": "blood_pressure",
        "measured_at": datetime.now(UTC).isoformat(),
        "systolic": 186,
        "diastolic": 124,
        "pulse": 88,
        "unit": "mmHg",
    }
    mqtt_publish.single(
        "rpm/v1/devices/BP-4001/readings",
        json.dumps(reading),
        qos=1,
        hostname="127.0.0.1",
        port=rpm.broker_port,
    )

    phone = open_page(390, 844)
    sign_in(phone.page, rpm, "nurse-1")
    card = phone.page.locator("#worklist tbody tr").first
    expect(card).to_contain_text("MRN-4001", timeout=20_000)
    _no_sideways_scroll(phone.page)
    phone.screenshot("first-alert-390")
    card.get_by_role("button", name="Acknowledge alert").click()
    expect(card).to_contain_text("nurse-1")
    phone.screenshot("acknowledged-390")
    assert desk.errors == admin.errors == phone.errors == []
