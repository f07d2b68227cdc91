"""The on-call nurse on a phone (390x844): from the SMS's link through sign-in to the
alert's page, Acknowledge within reach without scrolling; the worklist as cards; nothing
wider than the screen. And a patient's chart at a desk's width and a phone's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, RunningRpm
from tests.support import TEST_PASSWORD, Ward, add_alert, add_readings, add_user

pytestmark = pytest.mark.browser

PHONE = (390, 844)
DESK = (1280, 800)


def _no_sideways_scroll(page: Page) -> None:
    wide = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert wide[0] <= wide[1], f"the page is {wide[0]} px wide at {wide[1]}"


def _ward(rpm: RunningRpm) -> tuple[int, int]:
    ward = Ward.open(rpm.admin, "Team A")
    add_user(
        rpm.database_url, "nurse-1", "nurse", TEST_PASSWORD, ward.staff("nurse-1", "Nurse One")
    )
    ward.staff("nurse-2", "Nurse Two")
    patient = ward.patient("MRN-1001")
    ward.device("BP-1", "blood_pressure_cuff", patient)
    now = datetime.now(UTC)
    add_readings(
        rpm.database_url,
        "BP-1",
        patient,
        "blood_pressure",
        [
            (
                now - timedelta(hours=11 * n),
                {"systolic_mmhg": 150 + (n * 7) % 40, "diastolic_mmhg": 88 + n % 9},
            )
            for n in range(60)
        ],
    )
    alert = add_alert(rpm.database_url, patient, "bp_crisis", "critical", "BP 186/124: crisis")
    add_alert(rpm.database_url, patient, "systolic_low", "high", "Systolic 84", timedelta(hours=3))
    return patient, alert


def test_the_on_call_nurse_acts_from_the_sms_link_on_a_phone(
    rpm: RunningRpm, open_page: OpenPage
) -> None:
    patient, alert = _ward(rpm)
    shown = open_page(*PHONE)
    page = shown.page
    # The SMS's link, as rpm.alerts.routing.body builds it from the public URL.
    page.goto(f"{rpm.url}/ui/alerts/{alert}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    _no_sideways_scroll(page)
    shown.screenshot("1-sign-in")
    page.get_by_label("Username").fill("nurse-1")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{rpm.url}/ui/alerts/{alert}")
    acknowledge = page.get_by_role("button", name=f"Acknowledge alert {alert}")
    expect(acknowledge).to_be_in_viewport(ratio=1)
    box = acknowledge.bounding_box()
    assert box is not None
    assert box["height"] >= 44
    assert box["y"] + box["height"] <= PHONE[1]
    _no_sideways_scroll(page)
    shown.screenshot("2-alert")
    acknowledge.click()
    expect(page).to_have_url(f"{rpm.url}/ui/alerts/{alert}")
    expect(page.get_by_text("Acknowledged by nurse-1").first).to_be_visible()
    shown.screenshot("3-acknowledged")

    page.goto(f"{rpm.url}/ui/worklist")
    card = page.locator("#worklist tbody tr").nth(1)
    expect(card).to_contain_text("Systolic 84")
    _no_sideways_scroll(page)
    button = card.get_by_role("button", name="Acknowledge alert")
    box = button.bounding_box()
    assert box is not None
    assert box["height"] >= 44
    assert box["x"] + box["width"] <= PHONE[0]
    shown.screenshot("4-worklist")

    page.goto(f"{rpm.url}/ui/patients/{patient}")
    expect(page.locator("figure.chart svg").first).to_be_visible()
    _no_sideways_scroll(page)
    shown.screenshot("5-patient")
    assert shown.errors == []


def test_the_worklist_and_a_chart_at_a_desk(rpm: RunningRpm, open_page: OpenPage) -> None:
    patient, _ = _ward(rpm)
    shown = open_page(*DESK)
    page = shown.page
    page.goto(f"{rpm.url}/ui/login")
    page.get_by_label("Username").fill("nurse-1")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{rpm.url}/ui/worklist")
    _no_sideways_scroll(page)
    shown.screenshot("1-worklist")
    page.goto(f"{rpm.url}/ui/patients/{patient}")
    chart = page.locator("figure.chart svg").first
    box = chart.bounding_box()
    main = page.locator("main").bounding_box()
    assert box is not None
    assert main is not None
    assert box["width"] >= main["width"] - 60
    shown.screenshot("2-patient")
    assert shown.errors == []
