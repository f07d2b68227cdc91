"""Confirmation before alerting, end to end: readings over MQTT into the whole service, the
patient asked to re-measure by SMS through the real twilio SDK against the local fake,
then the repeat reading raising the alert or not; and, across a restart, no repeat at all
raising it once the window has passed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from rpm.app import create_app
from rpm.config import AlertsSettings, BrokerAddress, RulesSettings, TwilioSettings
from tests.fake_twilio import FakeTwilio
from tests.support import MosquittoProcess, signed_in, wait_until_ready, wiring

NOW = datetime.now(UTC).replace(microsecond=0)
PATIENT_PHONE = "+15555550123"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    process = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    process.start()
    yield process
    process.stop()


def _app(db_url: str, broker: MosquittoProcess, twilio: FakeTwilio, fatal: list[str]) -> Any:
    wired = wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal)
    settings = wired.settings.model_copy(
        update={
            "alerts": AlertsSettings(public_url="http://testserver", dispatch_poll_s=0.1),  # type: ignore[call-arg]
            "twilio": TwilioSettings(  # type: ignore[call-arg]
                account_sid=twilio.account_sid,
                auth_token=SecretStr(twilio.auth_token),
                from_number="+15555550100",
                api_base_url=twilio.base_url,
                timeout_s=2,
            ),
            "rules": RulesSettings(confirm_check_interval_s=5),  # type: ignore[call-arg]
        }
    )
    return create_app(dataclasses.replace(wired, settings=settings))


def _enrol(client: TestClient, ref: str, consent: bool = True) -> int:
    """A patient on the personal hypertension template, with a cuff; consenting to SMS,
    with quiet hours far from now (the outbox holds a patient's SMS in them)."""
    patient = client.post(
        "/api/v1/patients",
        json={
            "external_ref": ref,
            "given_name": "Test",
            "family_name": "Patient",
            "time_zone": "UTC",
            "templates": ["hypertension_personal"],
        },
    ).json()["id"]
    serial = f"{ref}-BP"
    client.post("/api/v1/devices", json={"serial": serial, "kind": "blood_pressure_cuff"})
    client.post(
        f"/api/v1/devices/{serial}/assign",
        json={"patient_id": patient, "at": (NOW - timedelta(days=10)).isoformat()},
    )
    if consent:
        quiet = (NOW + timedelta(hours=12)).time()
        choice = {
            "opted_in": True,
            "phone": PATIENT_PHONE,
            "quiet_hours_start": quiet.strftime("%H:%M"),
            "quiet_hours_end": (NOW + timedelta(hours=12, minutes=1)).time().strftime("%H:%M"),
        }
        answer = client.put(f"/api/v1/patients/{patient}/reminders", json=choice)
        assert answer.status_code == 200, answer.text
    return int(patient)


def _publish(port: int, serial: str, systolic: float, minutes_ago: float) -> None:
    document = {
        "kind": "blood_pressure",
        "measured_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "systolic": systolic,
        "diastolic": 80,
        "unit": "mmHg",
    }

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.publish(f"rpm/v1/devices/{serial}/readings", json.dumps(document), qos=1)

    asyncio.run(publish())


def _until(check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def _confirmations(db_url: str, patient: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT rule_id, outcome, alert_id IS NOT NULL FROM alert_confirmation"
            " WHERE patient_id = %s ORDER BY id",
            [patient],
        ).fetchall()


def _alerts(client: TestClient, patient: int) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = client.get(f"/api/v1/patients/{patient}/alerts").json()["alerts"]
    return alerts


def test_a_low_reading_asks_the_patient_and_the_repeat_decides(
    db_url: str, broker: MosquittoProcess, twilio: FakeTwilio
) -> None:
    fatal: list[str] = []
    with TestClient(_app(db_url, broker, twilio, fatal)) as client:
        wait_until_ready(client)
        signed_in(client, db_url, "admin-1")
        patient = _enrol(client, "P-1")

        # Systolic 85: below 90, high, confirm within 30 min. The patient is asked; no alert.
        _publish(broker.port, "P-1-BP", 85, minutes_ago=20)
        [asked] = twilio.wait_for(1)
        assert asked.to == PATIENT_PHONE
        assert asked.body == (
            "Your care team would like a second blood pressure reading to confirm your last"
            " one: please measure again within 30 minutes. Reply STOP to end these texts."
        )
        assert "85" not in asked.body
        assert _confirmations(db_url, patient) == [("systolic_low", None, False)]
        assert _alerts(client, patient) == []

        # The repeat is in range: settled, no alert.
        _publish(broker.port, "P-1-BP", 112, minutes_ago=18)
        _until(lambda: _confirmations(db_url, patient)[0][1] == "not_confirmed")
        assert _alerts(client, patient) == []

        # Low again, asked again; the repeat is low too: the alert, with both readings.
        _publish(broker.port, "P-1-BP", 84, minutes_ago=10)
        twilio.wait_for(2)
        _publish(broker.port, "P-1-BP", 83, minutes_ago=8)
        [alert] = _until(lambda: _alerts(client, patient))
        assert alert["rule_id"] == "systolic_low"
        assert alert["severity"] == "high"
        assert alert["latest_message"].endswith("Confirmed by a repeat reading.")
        detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
        assert sorted(r["systolic_mmhg"] for r in detail["readings"]) == [83, 84]
        assert [c[1] for c in _confirmations(db_url, patient)] == ["not_confirmed", "confirmed"]

        # A crisis never waits: the alert at once, and nobody asks the patient anything.
        _publish(broker.port, "P-1-BP", 186, minutes_ago=5)
        _until(lambda: any(a["rule_id"] == "bp_crisis" for a in _alerts(client, patient)))
        assert len(_confirmations(db_url, patient)) == 2
        assert [m.to for m in twilio.messages].count(PATIENT_PHONE) == 2

        # Without consent to SMS, nobody can be asked: the alert at once.
        other = _enrol(client, "P-2", consent=False)
        _publish(broker.port, "P-2-BP", 85, minutes_ago=5)
        [alert] = _until(lambda: _alerts(client, other))
        assert alert["rule_id"] == "systolic_low"
        assert _confirmations(db_url, other) == []
    assert fatal == []


def test_no_repeat_raises_the_alert_after_the_window_even_across_a_restart(
    db_url: str, broker: MosquittoProcess, twilio: FakeTwilio
) -> None:
    fatal: list[str] = []
    with TestClient(_app(db_url, broker, twilio, fatal)) as client:
        wait_until_ready(client)
        signed_in(client, db_url, "admin-1")
        patient = _enrol(client, "P-3")
        _publish(broker.port, "P-3-BP", 85, minutes_ago=1)
        twilio.wait_for(1)
        assert _confirmations(db_url, patient) == [("systolic_low", None, False)]
        assert _alerts(client, patient) == []
    # The service stops; the finding waits in the store. Its 30 minutes pass.
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE alert_confirmation SET due_at = now() - interval '1 second'"
            " WHERE patient_id = %s",
            [patient],
        )
    with TestClient(_app(db_url, broker, twilio, fatal)) as client:
        wait_until_ready(client)
        signed_in(client, db_url, "admin-2")
        # The scheduled check (every 5 s here) raises it.
        [alert] = _until(lambda: _alerts(client, patient))
        assert alert["rule_id"] == "systolic_low"
        assert alert["message"].endswith(
            "No repeat reading came within 30 min of asking the patient to re-measure."
        )
        assert _confirmations(db_url, patient) == [("systolic_low", "no_repeat", True)]
    assert fatal == []
