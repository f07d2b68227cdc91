"""SMS through the real twilio SDK against a local fake of Twilio's API: a reading over
MQTT to the on-call nurse's phone; retries, permanent failures, digests; signed status
callbacks and SMS replies (forged ones refused); and a send whose answer is lost is
reconciled, not sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiomqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from rpm.alerts import repository
from rpm.alerts.dispatcher import Dispatcher
from rpm.alerts.notifier import policy_of
from rpm.alerts.repository import WorklistFilter
from rpm.alerts.twilio_sms import TwilioSms
from rpm.app import create_app
from rpm.config import AlertsSettings, BrokerAddress, TwilioSettings
from tests.fake_twilio import FakeTwilio
from tests.support import (
    TEST_PASSWORD,
    MosquittoProcess,
    add_user,
    signed_in,
    wait_until_ready,
    wiring,
)

NOW = datetime.now(UTC).replace(microsecond=0)
NURSE_PHONE = "+15555550101"
PUBLIC = "http://testserver"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def _twilio_settings(fake: FakeTwilio) -> TwilioSettings:
    return TwilioSettings(  # type: ignore[call-arg]
        account_sid=fake.account_sid,
        auth_token=SecretStr(fake.auth_token),
        from_number="+15555550100",
        api_base_url=fake.base_url,
        timeout_s=2,
    )


def _alerts_settings(**changes: Any) -> AlertsSettings:
    return AlertsSettings(public_url=PUBLIC, dispatch_poll_s=0.1, **changes)  # type: ignore[call-arg]


def _setup_team(client: TestClient, patient_id: int, phone: str = NURSE_PHONE) -> int:
    staff = client.post(
        "/api/v1/staff",
        json={"username": "nurse-1", "display_name": "Nurse One", "role": "nurse", "phone": phone},
    ).json()["id"]
    team = client.post("/api/v1/care-teams", json={"name": "Team A"}).json()["id"]
    client.put(f"/api/v1/care-teams/{team}/members/{staff}")
    shift = {
        "staff_id": staff,
        "tier": 1,
        "starts_at": (NOW - timedelta(hours=1)).isoformat(),
        "ends_at": (NOW + timedelta(hours=8)).isoformat(),
    }
    assert client.post(f"/api/v1/care-teams/{team}/shifts", json=shift).status_code == 201
    client.put(f"/api/v1/patients/{patient_id}/care-team", json={"care_team_id": team})
    return int(staff)


def _patient_with_cuff(client: TestClient, ref: str) -> int:
    patient = client.post(
        "/api/v1/patients",
        json={
            "external_ref": ref,
            "given_name": "Test",
            "family_name": "Patient",
            "time_zone": "America/New_York",
            "templates": ["hypertension"],
        },
    ).json()["id"]
    serial = f"{ref}-BP"
    client.post("/api/v1/devices", json={"serial": serial, "kind": "blood_pressure_cuff"})
    client.post(
        f"/api/v1/devices/{serial}/assign",
        json={"patient_id": patient, "at": (NOW - timedelta(days=10)).isoformat()},
    )
    return int(patient)


async def _publish_bp(port: int, serial: str, systolic: float) -> None:
    document = {
        "kind": "blood_pressure",
        "measured_at": NOW.isoformat(),
        "systolic": systolic,
        "diastolic": 80,
        "unit": "mmHg",
    }
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(f"rpm/v1/devices/{serial}/readings", json.dumps(document), qos=1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    process = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    process.start()
    yield process
    process.stop()


def test_a_crisis_reading_texts_the_on_call_nurse_and_twilio_reports_delivery(
    db_url: str, broker: MosquittoProcess, twilio: FakeTwilio
) -> None:
    fatal: list[str] = []
    wired = wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal)
    settings = wired.settings.model_copy(
        update={"alerts": _alerts_settings(), "twilio": _twilio_settings(twilio)}
    )
    wired = dataclasses.replace(wired, settings=settings)
    with TestClient(create_app(wired)) as client:
        wait_until_ready(client)
        # An admin enrols, registers the cuff and sets up the team; the nurse acts by SMS.
        signed_in(client, db_url, "admin-1")
        patient = _patient_with_cuff(client, "P-1")
        nurse = _setup_team(client, patient)
        # Her sign-in is named otherwise than her staff record: the history uses the sign-in.
        add_user(db_url, "n.one", "nurse", TEST_PASSWORD, nurse)
        asyncio.run(_publish_bp(broker.port, "P-1-BP", 186))
        [sms] = twilio.wait_for(1)
        alert = client.get(f"/api/v1/patients/{patient}/alerts").json()["alerts"][0]
        assert sms.to == NURSE_PHONE
        link = f"{PUBLIC}/ui/alerts/{alert['id']}"
        assert sms.body == f"RPM critical alert #{alert['id']}: open the worklist {link}"
        assert "Test" not in sms.body
        assert "186" not in sms.body
        assert sms.validity_period is not None
        assert 0 < sms.validity_period <= 1800
        assert sms.status_callback is not None

        # Twilio's status callback, signed: the row is delivered. Forged: 403, nothing changes.
        path = sms.status_callback.removeprefix(PUBLIC)
        form = twilio.status_callback_form(sms.sid, "delivered")
        forged = client.post(path, data=form, headers={"X-Twilio-Signature": "forged"})
        assert forged.status_code == 403
        signature = twilio.sign(sms.status_callback, form)
        ok = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert ok.status_code == 204, ok.text
        detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
        [notification] = detail["notifications"]
        assert (notification["status"], notification["twilio_sid"]) == ("delivered", sms.sid)

        # The nurse replies ACK from the phone: acknowledged, as the nurse.
        url = f"{PUBLIC}/api/v1/twilio/inbound"
        stranger = {"From": "+15555550199", "To": "+15555550100", "Body": f"ACK {alert['id']}"}
        reply = client.post(
            "/api/v1/twilio/inbound",
            data=stranger,
            headers={"X-Twilio-Signature": twilio.sign(url, stranger)},
        )
        assert reply.status_code == 200
        assert "<Message>" not in reply.text
        mine = {**stranger, "From": NURSE_PHONE}
        forged = client.post(
            "/api/v1/twilio/inbound", data=mine, headers={"X-Twilio-Signature": "x"}
        )
        assert forged.status_code == 403
        assert client.get(f"/api/v1/alerts/{alert['id']}").json()["alert"]["status"] == "open"
        reply = client.post(
            "/api/v1/twilio/inbound",
            data=mine,
            headers={"X-Twilio-Signature": twilio.sign(url, mine)},
        )
        assert f"Alert #{alert['id']} acknowledged." in reply.text
        after = client.get(f"/api/v1/alerts/{alert['id']}").json()
        assert after["alert"]["status"] == "acknowledged"
        assert after["alert"]["acknowledged_by"] == "n.one"
    assert fatal == []


# The dispatcher alone, on a clock of the test's, against rows written as the rule engine
# writes them.


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False) as pool:
        yield pool


def _seed_alerts(db_url: str, count: int, phone: str = NURSE_PHONE) -> list[int]:
    """A patient, a nurse, and `count` open critical alerts each with a pending SMS."""
    with psycopg.connect(db_url) as conn:
        patient = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name) VALUES ('P-9', 'T', 'P')"
            " RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO care_plan_version (patient_id, version, document, author, reason)"
            " VALUES (%s, 1, '{}', 'cm', 'test')",
            [patient],
        )
        staff = conn.execute(
            "INSERT INTO staff (username, display_name, role, phone)"
            " VALUES ('nurse-1', 'N', 'nurse', %s) RETURNING id",
            [phone],
        ).fetchone()[0]  # type: ignore[index]
        ids = []
        for i in range(count):
            alert = conn.execute(
                "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
                " latest_message, first_triggered_at, last_triggered_at)"
                " VALUES (%s, %s, 1, 'critical', 'm', 'm', now(), now()) RETURNING id",
                [patient, f"rule_{i}"],
            ).fetchone()[0]  # type: ignore[index]
            row = conn.execute(
                "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
                " not_before, expires_at) VALUES (%s, %s, %s, 'opened', 'critical', 1, %s, %s)"
                " RETURNING id",
                [alert, staff, phone, NOW, NOW + timedelta(minutes=30)],
            ).fetchone()
            ids.append(row[0])  # type: ignore[index]
    return ids


def _statuses(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT status, attempts, error_code FROM notification ORDER BY id"
        ).fetchall()


def _dispatcher(
    pool: AsyncConnectionPool, twilio: FakeTwilio, clock: Clock, **alerts: Any
) -> Dispatcher:
    settings = _alerts_settings(**alerts)
    return Dispatcher(
        pool, TwilioSms(_twilio_settings(twilio)), settings, policy_of(settings), clock
    )


async def test_transient_errors_are_retried_with_backoff_and_permanent_ones_are_not(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    _seed_alerts(db_url, 1)
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock)
    twilio.fail_next(429, times=1)
    twilio.fail_next(500, times=1)
    assert await dispatcher.dispatch_once() == 1
    assert _statuses(db_url) == [("pending", 1, 20429)]
    assert await dispatcher.dispatch_once() == 0  # backing off
    clock.now += timedelta(seconds=10)
    assert await dispatcher.dispatch_once() == 1
    assert _statuses(db_url) == [("pending", 2, 20500)]
    clock.now += timedelta(seconds=6)
    assert await dispatcher.dispatch_once() == 0  # the second delay is longer (10 s +-20 %)
    clock.now += timedelta(seconds=10)
    assert await dispatcher.dispatch_once() == 1
    assert _statuses(db_url) == [("sent", 3, None)]
    assert len(twilio.messages) == 1


async def test_an_invalid_number_fails_for_good_and_is_not_retried(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    _seed_alerts(db_url, 1, phone="+15555550142")
    twilio.fail_to(
        "+15555550142", 400, 21211, "The 'To' number +15555550142 is not a valid phone number."
    )
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock)
    assert await dispatcher.dispatch_once() == 1
    clock.now += timedelta(hours=1)
    assert await dispatcher.dispatch_once() == 0
    assert _statuses(db_url) == [("failed", 1, 21211)]
    assert twilio.requests == 1
    # Shown on the alert in the worklist.
    async with pool.connection() as conn:
        [alert] = await repository.worklist(conn, WorklistFilter())
    assert alert.sms_failed


async def test_a_burst_beyond_the_rate_limit_becomes_one_digest(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    _seed_alerts(db_url, 8)
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock, sms_rate_limit=3)
    assert await dispatcher.dispatch_once() == 8
    bodies = [m.body for m in twilio.messages]
    assert len(bodies) == 3
    assert sum(b.startswith("RPM: 6 alerts need you (6 critical)") for b in bodies) == 1
    statuses = [s for s, _, _ in _statuses(db_url)]
    assert statuses.count("sent") == 3
    assert statuses.count("digested") == 5
    # The window is full: the next alert waits until a slot frees, then goes.
    _seed_more = psycopg.connect(db_url)
    with _seed_more as conn:
        conn.execute(
            "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
            " not_before, expires_at) SELECT alert_id, staff_id, to_phone, 'reminded', severity,"
            " 1, %s, %s FROM notification ORDER BY id LIMIT 1",
            [NOW, NOW + timedelta(hours=1)],
        )
    assert await dispatcher.dispatch_once() == 1
    assert len(twilio.messages) == 3
    clock.now += timedelta(minutes=16)
    await dispatcher.dispatch_once()
    assert len(twilio.messages) == 4


async def test_a_send_whose_answer_is_lost_is_reconciled_not_sent_twice(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    """Twilio accepts the message but the dispatcher never hears back (its call times
    out, as if it had died between Twilio's answer and its commit)."""
    _seed_alerts(db_url, 1)
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock)
    twilio.delay_next(3)  # longer than the client's 2 s timeout; the message is accepted
    assert await dispatcher.dispatch_once() == 1
    assert _statuses(db_url)[0][0] == "sending"
    assert len(twilio.messages) == 1
    # Nothing more is sent for it, however often the dispatcher runs...
    clock.now += timedelta(minutes=1)
    assert await dispatcher.dispatch_once() == 0
    # ...until reconciliation finds it at Twilio and records it as sent.
    clock.now += timedelta(minutes=2)
    assert await dispatcher.reconcile() == 1
    assert _statuses(db_url)[0][0] == "sent"
    await dispatcher.dispatch_once()
    assert len(twilio.messages) == 1
    assert twilio.requests == 1


async def test_a_digest_lost_on_its_way_is_sent_again_with_all_it_counted(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    """A digest's request never reaches Twilio: reconciliation puts the digest and every
    row it counted back, and the next round sends one digest of all of them."""
    _seed_alerts(db_url, 4)
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock, sms_rate_limit=1)
    twilio.hold_next()
    assert await dispatcher.dispatch_once() == 4  # one digest; the client times out
    assert sorted(s for s, _, _ in _statuses(db_url)) == ["digested"] * 3 + ["sending"]
    clock.now += timedelta(minutes=3)
    assert await dispatcher.reconcile() == 1
    assert [s for s, _, _ in _statuses(db_url)] == ["pending"] * 4
    assert await dispatcher.dispatch_once() == 4
    [message] = twilio.messages
    assert message.body.startswith("RPM: 4 alerts need you (4 critical)")
    with psycopg.connect(db_url) as conn:
        carrier = conn.execute(
            "SELECT digest_of FROM notification WHERE status = 'sent'"
        ).fetchall()
    assert carrier == [(4,)]


async def test_a_digest_found_at_twilio_settles_every_row_it_counted(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    _seed_alerts(db_url, 3)
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock, sms_rate_limit=1)
    twilio.delay_next(3)  # accepted, but the answer comes after the client gave up
    assert await dispatcher.dispatch_once() == 3
    clock.now += timedelta(minutes=3)
    assert await dispatcher.reconcile() == 1
    assert sorted(s for s, _, _ in _statuses(db_url)) == ["digested", "digested", "sent"]
    with psycopg.connect(db_url) as conn:
        digest_of = conn.execute("SELECT digest_of FROM notification WHERE status = 'sent'")
        assert digest_of.fetchall() == [(3,)]
    assert await dispatcher.dispatch_once() == 0
    assert len(twilio.messages) == 1


def _add_sms(db_url: str, phone: str, username: str | None = None) -> int:
    """Another pending SMS for the first alert: to a new nurse with this phone
    (`username`), or to the nurse who has it."""
    with psycopg.connect(db_url) as conn:
        if username is not None:
            conn.execute(
                "INSERT INTO staff (username, display_name, role, phone)"
                " VALUES (%s, 'N', 'nurse', %s)",
                [username, phone],
            )
        row = conn.execute(
            "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
            " not_before, expires_at) SELECT (SELECT min(id) FROM alert), s.id, s.phone,"
            " 'reminded', 'critical', 1, %s, %s FROM staff s WHERE s.phone = %s RETURNING id",
            [NOW, NOW + timedelta(minutes=30), phone],
        ).fetchone()
    return int(row[0])  # type: ignore[index]


async def test_rounds_overlap_and_the_rate_limit_counts_sms_still_in_flight(
    pool: AsyncConnectionPool, db_url: str, twilio: FakeTwilio
) -> None:
    """While Twilio holds one send, another alert's SMS still goes out; a second SMS to
    the nurse whose send is held waits for the window (rate limit 1), not sent beside it."""
    [held] = _seed_alerts(db_url, 1)
    clock = Clock()
    dispatcher = _dispatcher(pool, twilio, clock, sms_rate_limit=1)
    twilio.hold_next()
    running = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.to_thread(twilio.wait_for_held, 1, 5)
        other = _add_sms(db_url, "+15555550102", "nurse-2")
        same = _add_sms(db_url, NURSE_PHONE)
        dispatcher.wake()
        [message] = await asyncio.to_thread(twilio.wait_for, 1, 1.5)  # within the 2 s timeout
        assert parse_qs(urlsplit(message.status_callback or "").query)["notification"] == [
            str(other)
        ]
        await asyncio.sleep(0.3)
        with psycopg.connect(db_url) as conn:
            rows = dict(conn.execute("SELECT id, status FROM notification").fetchall())
            not_before = conn.execute(
                "SELECT not_before FROM notification WHERE id = %s", [same]
            ).fetchone()[0]  # type: ignore[index]
        assert rows == {held: "sending", other: "sent", same: "pending"}
        assert not_before >= clock.now + timedelta(minutes=14)
        assert len(twilio.messages) == 1
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
