"""A nurse in a real browser, at tablet width: the adherence worklist names a quiet
patient; on that patient's page she logs a call and sees the month's code, and the billing
periods below it."""

from __future__ import annotations

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, RunningRpm, sign_in
from tests.support import TEST_PASSWORD, Ward, add_user

pytestmark = pytest.mark.browser


def test_a_nurse_finds_a_quiet_patient_and_logs_a_call(
    rpm: RunningRpm, open_page: OpenPage
) -> None:
    ward = Ward.open(rpm.admin, "Team A")
    nurse = ward.staff("nurse-1", "Nurse One")
    add_user(rpm.database_url, "nurse-1", "nurse", TEST_PASSWORD, nurse)
    patient = ward.patient("MRN-3001")
    with psycopg.connect(rpm.database_url) as conn:
        # Enrolled 20 days ago, and silent since.
        conn.execute(
            "UPDATE patient SET enrolled_at = now() - interval '20 days' WHERE id = %s", [patient]
        )
        conn.execute(
            "UPDATE care_episode SET started_at = now() - interval '20 days' WHERE patient_id = %s",
            [patient],
        )
    shown = open_page(768)
    page = shown.page
    sign_in(page, rpm, "nurse-1")

    page.get_by_role("link", name="Adherence").click()
    expect(page.get_by_role("heading", name="Adherence", level=1)).to_be_visible()
    row = page.locator("tr", has_text="MRN-3001")
    expect(row).to_contain_text("0 of 16 days with")
    expect(row).to_contain_text("Out of reach")
    shown.screenshot("1-adherence")

    row.get_by_role("link", name="MRN-3001").click()
    expect(page.get_by_role("heading", name="Adherence this period")).to_be_visible()
    page.get_by_label("Minutes").fill("22")
    page.get_by_label("What was done").fill("Called: scale battery flat, replaced")
    page.get_by_label("Included a real-time call with the patient or caregiver").check()
    page.get_by_role("button", name="Log time").click()
    time_section = page.locator("#time")
    expect(time_section).to_contain_text("22 min")
    expect(time_section).to_contain_text("codes: 99457")
    expect(page.locator("#billing-caption")).to_contain_text("30-day periods")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shown.screenshot("2-time-logged")
