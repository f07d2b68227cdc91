"""A care manager runs the programme in a real browser, at a phone's width and a desk's:
enrols a patient from the form and edits the missed-readings rule of their plan, saved
as a new version; nothing scrolls sideways. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

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
