"""An admin in a real browser, at tablet width: a reading from a cuff nobody registered
is dead-lettered; once the cuff is registered and assigned, the admin opens the dead
letters, inspects the message and replays it, and is told it was stored."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.publish as mqtt_publish
import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, RunningRpm, sign_in
from tests.support import Ward

pytestmark = pytest.mark.browser

SERIAL = "BP-BROWSER-7"


def _dead_lettered_reading(rpm: RunningRpm) -> int:
    """The cuff sends a reading over MQTT before anyone registered it: the dead letter's id."""
    reading = {
        "kind": "blood_pressure",
        "measured_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "systolic": 128,
        "diastolic": 82,
        "unit": "mmHg",
    }
    mqtt_publish.single(
        f"rpm/v1/devices/{SERIAL}/readings",
        json.dumps(reading),
        qos=1,
        hostname="127.0.0.1",
        port=rpm.broker_port,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with psycopg.connect(rpm.database_url) as conn:
            row = conn.execute("SELECT max(id) FROM rejected_message").fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
        time.sleep(0.1)
    pytest.fail("the reading was not dead-lettered within 20 s")


def test_an_admin_inspects_a_dead_letter_and_replays_it(
    rpm: RunningRpm, open_page: OpenPage
) -> None:
    letter = _dead_lettered_reading(rpm)
    # The cuff is registered, and was the patient's from before the reading.
    patient = Ward.open(rpm.admin, "Team A").patient("MRN-4001")
    rpm.admin("POST", "/api/v1/devices", {"serial": SERIAL, "kind": "blood_pressure_cuff"})
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    rpm.admin("POST", f"/api/v1/devices/{SERIAL}/assign", {"patient_id": patient, "at": since})
    shown = open_page(768)
    page = shown.page

    sign_in(page, rpm, "admin-1")
    page.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    row = page.locator(f"#dead-letter-{letter}")
    expect(row).to_contain_text(SERIAL)
    expect(row).to_contain_text("Unknown device")
    # Readable at 768 px: nothing wider than the screen.
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    shown.screenshot("1-dead-letters")

    row.get_by_role("link", name=f"Inspect dead letter {letter}").click()
    expect(page.get_by_role("heading", name=f"Dead letter {letter}")).to_be_visible()
    expect(page.get_by_role("region", name="Payload")).to_contain_text('"systolic": 128')
    shown.screenshot("2-inspected")

    page.get_by_role("button", name=f"Replay dead letter {letter}").click()
    outcome = page.locator("#replay .outcome")
    expect(outcome).to_contain_text("Replayed just now: Stored 1 reading(s), 0 already stored.")
    expect(outcome).to_be_focused()  # the button is gone: the keyboard is on what it says
    shown.screenshot("3-replayed")
    with psycopg.connect(rpm.database_url) as conn:
        assert conn.execute("SELECT patient_id FROM reading").fetchall() == [(patient,)]
    assert shown.errors == []
