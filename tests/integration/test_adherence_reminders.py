"""Adherence reminders to patients, end to end on a real PostgreSQL and the real Twilio SDK
against the local fake: only with consent, after the silent days, outside quiet hours,
once per silence, within the rate limit, cancelled by a reading, and ended by a STOP."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from rpm.alerts.dispatcher import Dispatcher
from rpm.alerts.notifier import policy_of
from rpm.alerts.twilio_sms import TwilioSms
from rpm.app import create_app
from rpm.config import AdherenceSettings, AlertsSettings, BrokerAddress, TwilioSettings
from rpm.program.reminders import AdherenceReminders
from tests.fake_twilio import FakeTwilio
from tests.support import MosquittoProcess, wait_until_ready, wiring

PATIENT_PHONE = "+15555550142"
# 14:00 in Chicago: outside the default quiet hours (21:00 to 09:00).
AFTERNOON = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False) as pool:
        yield pool


def _patient(
    db_url: str,
    last_reading: datetime | None,
    opted_in: bool = True,
    enrolled: datetime = datetime(2026, 11, 1, 15, tzinfo=UTC),
    ref: str = "P-REM",
    phone: str = PATIENT_PHONE,
    **columns: Any,
) -> int:
    """A Chicago patient, with a weight reading at `last_reading`."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at,"
            " reminder_phone, reminders_opted_in_at) VALUES (%s, 'Test', 'Patient',"
            " 'America/Chicago', %s, %s, %s) RETURNING id",
            [ref, enrolled, phone, enrolled if opted_in else None],
        ).fetchone()
        assert row is not None
        patient_id = int(row[0])
        if columns:
            assignments = ", ".join(f"{column} = %s" for column in columns)
            conn.execute(
                f"UPDATE patient SET {assignments} WHERE id = %s",
                [*columns.values(), patient_id],
            )
        if last_reading is not None:
            device = conn.execute(
                "INSERT INTO device (serial, kind) VALUES (%s, 'weight_scale') RETURNING id",
                [f"{ref}-SCALE"],
            ).fetchone()
            assert device is not None
            conn.execute(
                "INSERT INTO reading (device_id, kind, measured_at, patient_id, weight_kg,"
                " original, source) VALUES (%s, 'body_weight', %s, %s, 80, '{}', 'native')",
                [device[0], last_reading, patient_id],
            )
            conn.execute("SELECT reading_day_rebuild(%s)", [patient_id])
    return patient_id


def _reminders(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT patient_id, status, not_before, body FROM notification"
            " WHERE purpose = 'adherence_reminder' ORDER BY id"
        ).fetchall()


def _job(pool: AsyncConnectionPool, clock: Clock, **settings: Any) -> AdherenceReminders:
    return AdherenceReminders(pool, AdherenceSettings(**settings), clock=clock)


def _dispatcher(
    pool: AsyncConnectionPool, twilio: FakeTwilio, clock: Clock, **alerts: Any
) -> Dispatcher:
    settings = AlertsSettings(public_url="http://testserver", **alerts)
    return Dispatcher(
        pool, TwilioSms(_twilio_settings(twilio)), settings, policy_of(settings), clock
    )


def _twilio_settings(twilio: FakeTwilio) -> TwilioSettings:
    return TwilioSettings(  # type: ignore[call-arg]
        account_sid=twilio.account_sid,
        auth_token=SecretStr(twilio.auth_token),
        from_number="+15555550100",
        api_base_url=twilio.base_url,
        timeout_s=2,
    )


async def test_a_reminder_after_the_silent_days_once_per_silence(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    # Last reading on 20 November (Chicago): the 21st, 22nd and 23rd are silent.
    patient = _patient(db_url, datetime(2026, 11, 20, 18, tzinfo=UTC))
    clock = Clock(AFTERNOON - timedelta(days=1))
    job = _job(pool, clock)
    assert await job.run() == 0  # two silent days only
    clock.now = AFTERNOON
    assert await job.run() == 1
    [(who, status, not_before, body)] = _reminders(db_url)
    assert (who, status, not_before) == (patient, "pending", AFTERNOON)
    assert body.startswith("Your care team has had no reading from your home device for 3 days.")
    assert await job.run() == 0  # one waiting at most

    dispatcher = _dispatcher(pool, twilio, clock)
    assert await dispatcher.dispatch_once() == 1
    [message] = twilio.messages
    assert (message.to, message.body) == (PATIENT_PHONE, body)
    # Sent: not again tomorrow, again after three more silent days.
    clock.now = AFTERNOON + timedelta(days=1)
    assert await job.run() == 0
    clock.now = AFTERNOON + timedelta(days=3)
    assert await job.run() == 1


async def test_no_reminder_without_consent_or_while_paused(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    silent_since = datetime(2026, 11, 10, tzinfo=UTC)
    _patient(db_url, silent_since, opted_in=False, ref="P-NO")
    _patient(db_url, silent_since, ref="P-PAUSED", status="paused")
    _patient(db_url, silent_since, ref="P-OWN", reminder_after_days=30)
    assert await _job(pool, Clock(AFTERNOON)).run() == 0
    assert _reminders(db_url) == []


async def test_quiet_hours_hold_a_reminder_until_they_end(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    _patient(db_url, datetime(2026, 11, 10, tzinfo=UTC), ref="P-DEFAULT")
    _patient(db_url, datetime(2026, 11, 10, tzinfo=UTC), ref="P-OWN", phone="+15555550143",
             quiet_hours_start=time(22, 0), quiet_hours_end=time(7, 30))  # fmt: skip
    # 21:30 in Chicago: inside the service's quiet hours, not inside the patient's own.
    evening = datetime(2026, 11, 25, 3, 30, tzinfo=UTC)
    assert await _job(pool, Clock(evening)).run() == 2
    default, own = (row[2] for row in _reminders(db_url))
    assert default == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 09:00 in Chicago
    assert own == evening


async def test_a_reading_cancels_a_waiting_reminder_and_opting_out_does_too(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    read = _patient(db_url, datetime(2026, 11, 10, tzinfo=UTC), ref="P-READ")
    stop = _patient(db_url, datetime(2026, 11, 10, tzinfo=UTC), ref="P-STOP", phone="+15555550144")
    clock = Clock(AFTERNOON)
    assert await _job(pool, clock).run() == 2
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, weight_kg, original,"
            " source) SELECT id, 'body_weight', now(), %s, 81, '{}', 'native' FROM device"
            " WHERE serial = 'P-READ-SCALE'",
            [read],
        )
        conn.execute("UPDATE patient SET reminders_opted_in_at = NULL WHERE id = %s", [stop])
    assert await _dispatcher(pool, twilio, clock).dispatch_once() == 0
    assert [row[1] for row in _reminders(db_url)] == ["cancelled", "cancelled"]
    assert twilio.messages == []


async def test_reminders_count_in_the_rate_limit_per_patient(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    patient = _patient(db_url, datetime(2026, 11, 10, tzinfo=UTC))
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO notification (patient_id, to_phone, purpose, severity, status, sent_at,"
            " not_before, expires_at, body) VALUES (%s, %s, 'adherence_reminder', 'warning',"
            " 'sent', %s, %s, %s, 'earlier')",
            [patient, PATIENT_PHONE, AFTERNOON - timedelta(minutes=5), AFTERNOON,
             AFTERNOON + timedelta(hours=1)],
        )  # fmt: skip
    clock = Clock(AFTERNOON + timedelta(days=3))
    assert await _job(pool, clock).run() == 1
    dispatcher = _dispatcher(pool, twilio, clock, sms_rate_limit=1, sms_rate_window_min=15)
    clock.now = AFTERNOON + timedelta(days=3)
    assert await dispatcher.dispatch_once() == 1
    assert len(twilio.messages) == 1


def test_a_stop_reply_ends_the_patients_consent(
    db_url: str, twilio: FakeTwilio, tmp_path: Path
) -> None:
    patient = _patient(db_url, None)
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    broker.start()
    fatal: list[str] = []
    try:
        wired = wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal)
        settings = wired.settings.model_copy(
            update={
                "alerts": AlertsSettings(public_url="http://testserver"),  # type: ignore[call-arg]
                "twilio": _twilio_settings(twilio),
            }
        )
        with TestClient(create_app(dataclasses.replace(wired, settings=settings))) as client:
            wait_until_ready(client)
            url = "http://testserver/api/v1/twilio/inbound"
            form = {"From": PATIENT_PHONE, "To": "+15555550100", "Body": " stop "}
            reply = client.post(
                "/api/v1/twilio/inbound",
                data=form,
                headers={"X-Twilio-Signature": twilio.sign(url, form)},
            )
            assert reply.status_code == 200
            assert "<Message>" not in reply.text  # Twilio confirms a STOP itself
    finally:
        broker.stop()
    assert fatal == []
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT reminders_opted_in_at FROM patient WHERE id = %s", [patient]
        ).fetchone()
        audit = conn.execute(
            "SELECT username, action, resource FROM audit_event WHERE patient_id = %s",
            [patient],
        ).fetchall()
    assert row == (None,)
    assert audit == [("sms:patient", "opt_out", "reminders")]
