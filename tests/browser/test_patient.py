"""A care manager in a real browser, at tablet width: from the worklist to a patient's
page, whose chart shows the readings with the care plan's limits drawn on it; then to the
care-plan editor, where a lowered limit is previewed against the last 30 days (the counts
change, nothing is saved) and saved as a new version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, RunningRpm, sign_in
from tests.support import TEST_PASSWORD, Ward, add_alert, add_readings, add_user

pytestmark = pytest.mark.browser


def test_a_care_manager_reads_a_chart_then_previews_and_saves_a_lower_limit(
    rpm: RunningRpm, open_page: OpenPage
) -> None:
    ward = Ward.open(rpm.admin, "Team A")
    manager = ward.staff("manager-1", "Care Manager One", role="care_manager")
    add_user(rpm.database_url, "manager-1", "care_manager", TEST_PASSWORD, manager)
    patient = ward.patient("MRN-2001")
    ward.device("BP-2001", "blood_pressure_cuff", patient)
    # Four weeks of mornings at 165/85, two of them in crisis at 185.
    now = datetime.now(UTC)
    add_readings(
        rpm.database_url,
        "BP-2001",
        patient,
        "blood_pressure",
        [
            (
                now - timedelta(days=day),
                {"systolic_mmhg": 185 if day in (5, 20) else 165, "diastolic_mmhg": 85},
            )
            for day in range(1, 29)
        ],
    )
    add_alert(rpm.database_url, patient, "bp_crisis", "critical", "BP 185/85: crisis")
    shown = open_page(768)
    page = shown.page
    sign_in(page, rpm, "manager-1")

    # From the worklist's row to the patient's page.
    page.get_by_role("link", name="MRN-2001").click()
    expect(page.get_by_role("heading", name="Patient MRN-2001", level=1)).to_be_visible()
    chart = page.locator("#chart-blood_pressure svg[role='img']")
    expect(chart).to_be_visible()
    crisis = chart.locator("g.threshold[data-rule='bp_crisis']")
    expect(crisis.locator("line")).to_have_count(2)
    # Its value beside the plot, its words in the line's title and the legend.
    expect(crisis.first.locator("text")).to_have_text("180")
    expect(crisis.first.locator("title")).to_have_text("Critical ≥ 180 mmHg systolic")
    expect(chart.locator(".series-1 circle")).to_have_count(28)
    # The page fits the tablet: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shown.screenshot("1-patient-chart")
    page.locator("#chart-blood_pressure summary").click()
    table = page.locator("#chart-blood_pressure table").first
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(28)
    expect(page.locator("#alerts-caption")).to_contain_text("1 alert, newest first")

    # The editor: the counts of the plan as it stands, then with the crisis limit at 160.
    page.get_by_role("link", name="Version 1").click()
    expect(page.get_by_role("heading", name="Care plan of patient MRN-2001")).to_be_visible()
    preview = page.locator("#preview")
    page.get_by_role("button", name="Preview the last 30 days").click()
    expect(preview).to_contain_text("Preview, not saved")
    expect(preview.locator("#count-bp_crisis td")).to_have_text(["2", "2"])
    page.get_by_label("Hypertensive crisis: critical limit, systolic at or above").fill("160")
    page.get_by_role("button", name="Preview the last 30 days").click()
    # Every reading is over 160: one long episode instead of two.
    expect(preview.locator("#count-bp_crisis td")).to_have_text(["2", "1"])
    expect(preview).to_contain_text("the proposed plan would have raised 2 alerts")
    shown.screenshot("2-preview")

    page.get_by_label("Why the change (kept with the version)").fill(
        "Reviewed at clinic: call earlier"
    )
    page.get_by_role("button", name="Save as version 2").click()
    expect(page).to_have_url(f"{rpm.url}/ui/patients/{patient}/care-plan?saved=2")
    expect(page.get_by_role("status").filter(has_text="Saved")).to_have_text(
        "Saved: the care plan is now at version 2."
    )
    expect(page.locator("#version-2")).to_contain_text("manager-1")
    expect(page.locator("#version-2")).to_contain_text("Reviewed at clinic: call earlier")
    expect(page.locator("#last-change")).to_contain_text("value 180 → 160")
    expect(page.locator("#limit-bp_crisis-0")).to_have_value("160")
    shown.screenshot("3-saved")
    assert shown.errors == []
