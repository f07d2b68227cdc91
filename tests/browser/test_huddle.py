"""A care team's huddle in a real browser, at desk and phone width: the patient past the
crisis limit comes first, the follow-up is given from the board, and a hand-off note is
written on the patient's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, RunningRpm, sign_in
from tests.support import TEST_PASSWORD, Ward, add_readings, add_user

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_the_team_discusses_the_crisis_first_and_hands_it_over(
    rpm: RunningRpm, open_page: OpenPage, width: int, height: int
) -> None:
    ward = Ward.open(rpm.admin, "Team A")
    nurse = ward.staff("nurse-1", "Nurse One")
    teammate = ward.staff("nurse-2", "Nurse Two")
    add_user(rpm.database_url, "nurse-1", "nurse", TEST_PASSWORD, nurse)
    now = datetime.now(UTC)
    for ref, systolic in (("MRN-4001", 124.0), ("MRN-4002", 188.0), ("MRN-4003", 131.0)):
        patient = ward.patient(ref)
        ward.device(f"CUFF-{ref}", "blood_pressure_cuff", patient)
        # Two weeks at 128 mmHg systolic, then today's reading.
        readings = [
            (now - timedelta(days=d, hours=1),
             {"systolic_mmhg": systolic if d == 0 else 128.0, "diastolic_mmhg": 82.0})
            for d in range(14)
        ]  # fmt: skip
        add_readings(rpm.database_url, f"CUFF-{ref}", patient, "blood_pressure", readings)
    shown = open_page(width, height)
    page = shown.page
    sign_in(page, rpm, "nurse-1")

    page.get_by_role("link", name="Huddle").click()
    expect(page.get_by_role("heading", name="Huddle: Team A", level=1)).to_be_visible()
    expect(page.locator("#huddle-caption")).to_contain_text("3 patients, 1 to discuss")
    first = page.locator("#huddle tbody tr").first
    expect(first).to_contain_text("MRN-4002")
    expect(first).to_contain_text("Last systolic 188 mmHg: ≥ 180 mmHg (critical).")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shown.screenshot("1-huddle")

    first.get_by_label("Follow-up of Test Patient").select_option(label="Nurse Two")
    first.get_by_role("button", name="Give").click()
    given = page.locator("#huddle tbody tr").first.get_by_label("Follow-up of Test Patient")
    expect(given).to_have_value(str(teammate))

    page.locator("#huddle tbody tr").first.get_by_role("link", name="Test Patient").click()
    page.get_by_label("New note for the care team").fill(
        "Crisis reading at huddle: Nurse Two calls today."
    )
    page.get_by_role("button", name="Add note").click()
    notes = page.locator("#notes")
    expect(notes).to_contain_text("Crisis reading at huddle: Nurse Two calls today.")
    expect(notes).to_contain_text("Nurse One")
    notes.scroll_into_view_if_needed()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shown.screenshot("2-note")
