"""The rule engine against the real PostgreSQL: readings stored by the ingest service
raise, update and suppress alerts; evaluation survives a crash; concurrent workers
cannot double-alert; the missed-readings check runs on local calendar days."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from rpm.devices import registry
from rpm.devices.checks import TimeLimits
from rpm.devices.model import DeviceKind
from rpm.ingest.pipeline import Envelope, ReadingRow, Transport
from rpm.ingest.repository import Connection
from rpm.ingest.service import AfterCommit, IngestService
from rpm.rules import care_plans
from rpm.rules.engine import MISSED_CHECK_LOCK, RuleEngine
from rpm.rules.handoff import RulesHandoff
from rpm.rules.templates import plan_from_templates

Conn = psycopg.AsyncConnection[TupleRow]
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False) as pool:
        yield pool


@pytest.fixture
def engine(pool: AsyncConnectionPool) -> RuleEngine:
    return RuleEngine(pool)


@pytest.fixture
def ingest(pool: AsyncConnectionPool, engine: RuleEngine) -> IngestService:
    return IngestService(pool, TimeLimits(), RulesHandoff(engine))


async def _enrol(
    conn: Conn,
    ref: str,
    templates: Sequence[str] = ("hypertension", "heart_failure", "diabetes"),
    time_zone: str = "America/New_York",
    enrolled_at: datetime | None = None,
) -> int:
    enrolled_at = enrolled_at or NOW - timedelta(days=60)
    cursor = await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at)"
        " VALUES (%s, 'Test', 'Patient', %s, %s) RETURNING id",
        [ref, time_zone, enrolled_at],
    )
    row = await cursor.fetchone()
    assert row is not None
    patient_id = int(row[0])
    await care_plans.save(
        conn, patient_id, plan_from_templates(templates), "cm-1", "enrolment", None, templates
    )
    for kind, suffix in ((DeviceKind.BLOOD_PRESSURE_CUFF, "BP"), (DeviceKind.WEIGHT_SCALE, "SC")):
        await registry.register(conn, f"{ref}-{suffix}", kind)
        await registry.assign(conn, f"{ref}-{suffix}", patient_id, enrolled_at)
    await conn.commit()
    return patient_id


def _bp(serial: str, at: datetime, systolic: float, diastolic: float = 80) -> Envelope:
    document = {
        "kind": "blood_pressure",
        "measured_at": at.isoformat(),
        "systolic": systolic,
        "diastolic": diastolic,
        "pulse": 70,
        "unit": "mmHg",
    }
    return Envelope(
        Transport.MQTT, f"rpm/v1/devices/{serial}/readings", json.dumps(document).encode(), NOW
    )


def _weight(serial: str, at: datetime, kg: float) -> Envelope:
    document = {"kind": "body_weight", "measured_at": at.isoformat(), "weight": kg, "unit": "kg"}
    return Envelope(
        Transport.MQTT, f"rpm/v1/devices/{serial}/readings", json.dumps(document).encode(), NOW
    )


async def _alerts(conn: Conn, patient_id: int) -> list[tuple[object, ...]]:
    cursor = await conn.execute(
        "SELECT rule_id, severity, status, occurrences, plan_version, message,"
        " first_triggered_at, last_triggered_at FROM alert WHERE patient_id = %s ORDER BY id",
        [patient_id],
    )
    rows = await cursor.fetchall()
    await conn.commit()
    return rows


async def test_a_crisis_opens_one_alert_and_recurrences_update_it(
    conn: Conn, ingest: IngestService
) -> None:
    patient = await _enrol(conn, "P-1")
    await ingest.ingest([_bp("P-1-BP", NOW - timedelta(hours=3), 186)])
    [(rule, severity, status, occurrences, version, message, *_)] = await _alerts(conn, patient)
    assert (rule, severity, status, occurrences, version) == ("bp_crisis", "critical", "open", 1, 1)
    # 14:00 UTC is 09:00 or 10:00 in New York: the patient's clock, not the server's.
    assert message.startswith("Systolic 186 mmHg at ")
    assert "is at or above the crisis limit of 180 mmHg (care plan v1)." in message
    assert "re-measure" in message

    await ingest.ingest([_bp("P-1-BP", NOW - timedelta(hours=2), 150, 125)])
    await ingest.ingest([_bp("P-1-BP", NOW - timedelta(hours=1), 130)])
    alerts = await _alerts(conn, patient)
    assert [(a[0], a[3]) for a in alerts] == [("bp_crisis", 2)]
    # The headline is the most severe finding, the latest of those; 130 did not fire.
    assert alerts[0][5].startswith("Diastolic 125 mmHg")


async def test_a_resolved_alert_is_not_reopened_by_the_same_episode(
    conn: Conn, ingest: IngestService
) -> None:
    patient = await _enrol(conn, "P-2", templates=["hypertension"])
    await ingest.ingest([_bp("P-2-BP", NOW - timedelta(hours=5), 185)])
    await conn.execute(
        "UPDATE alert SET status = 'resolved', resolved_at = now() WHERE patient_id = %s",
        [patient],
    )
    await conn.commit()
    # Still high (within the 5 mmHg hysteresis): the same episode, already handled.
    await ingest.ingest([_bp("P-2-BP", NOW - timedelta(hours=4), 178)])
    await ingest.ingest([_bp("P-2-BP", NOW - timedelta(hours=3), 183)])
    assert len(await _alerts(conn, patient)) == 1
    # Back to normal, then high again: a new episode, a new alert.
    await ingest.ingest([_bp("P-2-BP", NOW - timedelta(hours=2), 130)])
    await ingest.ingest([_bp("P-2-BP", NOW - timedelta(hours=1), 190)])
    # (The mean of these readings is also stage 2: another rule, another alert.)
    crisis = [a for a in await _alerts(conn, patient) if a[0] == "bp_crisis"]
    assert [a[2] for a in crisis] == ["resolved", "open"]


async def test_a_late_reading_is_judged_in_its_place_in_time(
    conn: Conn, ingest: IngestService
) -> None:
    patient = await _enrol(conn, "P-3", templates=["heart_failure"])
    days = [NOW - timedelta(days=d) for d in (6, 5, 3, 2, 1)]
    await ingest.ingest([_weight("P-3-SC", at, 80.0) for at in days])
    assert await _alerts(conn, patient) == []
    # Day 4 arrives late, 2 kg (4.4 lb) over day 5: a gain in a day, four days ago.
    late = NOW - timedelta(days=4)
    await ingest.ingest([_weight("P-3-SC", late, 82.0)])
    [alert] = await _alerts(conn, patient)
    assert alert[0] == "weight_gain_day"
    assert alert[6] == alert[7] == late
    assert "Weight up 4.4 lb within 24 h" in alert[5]


async def test_a_batch_left_unevaluated_by_a_crash_is_evaluated_by_the_sweeper(
    conn: Conn, pool: AsyncConnectionPool, engine: RuleEngine
) -> None:
    patient = await _enrol(conn, "P-4", templates=["hypertension"])
    handoff = RulesHandoff(engine)

    async def crash_after_commit(
        conn: Connection, rows: Sequence[ReadingRow]
    ) -> AfterCommit | None:
        await handoff(conn, rows)  # queued with the readings, then the process "dies"
        return None

    crashing = IngestService(pool, TimeLimits(), crash_after_commit)
    await crashing.ingest([_bp("P-4-BP", NOW - timedelta(hours=1), 200)])
    assert await _alerts(conn, patient) == []
    assert await engine.sweep(older_than_s=0) == 1
    [alert] = await _alerts(conn, patient)
    assert (alert[0], alert[3]) == ("bp_crisis", 1)
    assert await engine.sweep(older_than_s=0) == 0


async def test_evaluating_the_same_readings_twice_counts_them_once(
    conn: Conn, pool: AsyncConnectionPool, engine: RuleEngine
) -> None:
    patient = await _enrol(conn, "P-5", templates=["hypertension"])
    handoff = RulesHandoff(engine)

    async def enqueue_twice(conn: Connection, rows: Sequence[ReadingRow]) -> AfterCommit | None:
        await handoff(conn, rows)
        return await handoff(conn, rows)

    service = IngestService(pool, TimeLimits(), enqueue_twice)
    await service.ingest([_bp("P-5-BP", NOW - timedelta(hours=1), 200)])
    await engine.sweep(older_than_s=0)
    [alert] = await _alerts(conn, patient)
    assert alert[3] == 1


async def test_concurrent_workers_keep_one_open_alert_per_patient_and_rule(
    conn: Conn, db_url: str
) -> None:
    patient = await _enrol(conn, "P-6", templates=["hypertension"])
    async with (
        AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) as pool_a,
        AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) as pool_b,
    ):
        workers = [
            IngestService(pool, TimeLimits(), RulesHandoff(RuleEngine(pool)))
            for pool in (pool_a, pool_b)
        ]
        batches = [
            [_bp("P-6-BP", NOW - timedelta(minutes=10 * i + w), 190) for i in range(5)]
            for w in range(2)
        ]
        await asyncio.gather(*(w.ingest(b) for w, b in zip(workers, batches, strict=True)))
    [crisis] = [a for a in await _alerts(conn, patient) if a[0] == "bp_crisis"]
    assert (crisis[2], crisis[3]) == ("open", 10)


async def test_an_alert_records_the_plan_version_that_raised_it(
    conn: Conn, ingest: IngestService
) -> None:
    patient = await _enrol(conn, "P-7", templates=["hypertension"])
    plan = plan_from_templates(["hypertension"]).model_dump(mode="json")
    plan["rules"][0]["limits"][0]["value"] = 170
    await care_plans.save(
        conn, patient, care_plans.CarePlan.model_validate(plan), "cm-2", "lower limit", 1
    )
    await conn.commit()
    await ingest.ingest([_bp("P-7-BP", NOW - timedelta(hours=1), 172)])
    [alert] = await _alerts(conn, patient)
    assert alert[4] == 2
    assert "crisis limit of 170 mmHg (care plan v2)" in alert[5]


async def test_missed_readings_count_whole_local_days(
    conn: Conn, pool: AsyncConnectionPool
) -> None:
    # Enrolled on 1 March (Berlin); the last reading on 2 March at 23:30 local time.
    enrolled = datetime(2026, 3, 1, 8, tzinfo=UTC)
    patient = await _enrol(conn, "P-8", ["hypertension"], "Europe/Berlin", enrolled)
    last = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)
    ingest = IngestService(pool, TimeLimits(max_age=None))
    await ingest.ingest([_bp("P-8-BP", last, 125)])

    def engine_at(at: datetime) -> RuleEngine:
        return RuleEngine(pool, clock=lambda: at)

    # 3, 4 and 5 March missed; at 23:00 UTC on the 5th it is already the 6th in Berlin.
    assert await engine_at(datetime(2026, 3, 5, 22, 59, tzinfo=UTC)).check_missed() == []
    [opened] = await engine_at(datetime(2026, 3, 5, 23, 0, tzinfo=UTC)).check_missed()
    assert opened.opened
    assert opened.rule_id == "missed_readings"
    # The next run updates the open alert rather than opening another.
    [again] = await engine_at(datetime(2026, 3, 6, 1, 0, tzinfo=UTC)).check_missed()
    assert not again.opened
    assert again.alert_id == opened.alert_id
    [alert] = await _alerts(conn, patient)
    assert alert[5].startswith("No blood pressure reading for 3 days (last on 2 Mar)")
    # Resolved by a nurse: the same gap does not bring it back.
    await conn.execute("UPDATE alert SET status = 'resolved', resolved_at = now()")
    await conn.commit()
    assert await engine_at(datetime(2026, 3, 7, 1, 0, tzinfo=UTC)).check_missed() == []


async def test_a_patient_without_readings_is_missed_from_enrolment(
    conn: Conn, pool: AsyncConnectionPool
) -> None:
    enrolled = datetime(2026, 3, 1, 8, tzinfo=UTC)
    await _enrol(conn, "P-9", ["heart_failure"], "UTC", enrolled)
    engine = RuleEngine(pool, clock=lambda: datetime(2026, 3, 4, 0, 30, tzinfo=UTC))
    [opened] = await engine.check_missed()
    cursor = await conn.execute("SELECT message FROM alert WHERE id = %s", [opened.alert_id])
    row = await cursor.fetchone()
    assert row is not None
    assert row[0].startswith("No body weight reading since enrolment on 1 Mar")


async def test_only_one_process_runs_the_missed_check_at_a_time(
    conn: Conn, pool: AsyncConnectionPool
) -> None:
    await _enrol(conn, "P-10", ["heart_failure"], "UTC", NOW - timedelta(days=10))
    async with pool.connection() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", [MISSED_CHECK_LOCK])
        assert await RuleEngine(pool).check_missed() == []
    assert len(await RuleEngine(pool).check_missed()) == 1


async def test_an_episode_longer_than_the_plans_lookback_stays_one_episode(
    conn: Conn, ingest: IngestService
) -> None:
    patient = await _enrol(conn, "P-11", templates=["hypertension"])
    # Only the crisis rule: the plan looks back a day, the readings are days apart.
    crisis_only = plan_from_templates(["hypertension"]).model_dump(mode="json")
    crisis_only["rules"] = crisis_only["rules"][:1]
    await care_plans.save(
        conn, patient, care_plans.CarePlan.model_validate(crisis_only), "cm-1", "crisis only", 1
    )
    await conn.commit()
    await ingest.ingest([_bp("P-11-BP", NOW - timedelta(days=5), 190)])
    await conn.execute("UPDATE alert SET status = 'resolved', resolved_at = now()")
    await conn.commit()
    await ingest.ingest([_bp("P-11-BP", NOW - timedelta(days=3), 188)])
    assert len(await _alerts(conn, patient)) == 1
    await ingest.ingest([_bp("P-11-BP", NOW - timedelta(days=2), 130)])
    await ingest.ingest([_bp("P-11-BP", NOW - timedelta(days=1), 191)])
    assert [a[2] for a in await _alerts(conn, patient)] == ["resolved", "open"]


async def test_warming_parses_the_plans_of_patients_whose_devices_sent_lately(
    conn: Conn, ingest: IngestService, pool: AsyncConnectionPool
) -> None:
    await _enrol(conn, "P-1")
    await _enrol(conn, "P-2")  # enrolled, its devices silent
    await ingest.ingest([_bp("P-1-BP", NOW - timedelta(hours=1), 120)])
    assert await RuleEngine(pool).warm() == 1
    # Two days later nobody counts as active: nothing to warm.
    assert await RuleEngine(pool, clock=lambda: NOW + timedelta(days=3)).warm() == 0


async def test_patients_with_the_same_plan_document_share_one_parsed_plan(conn: Conn) -> None:
    """A template's plan is parsed once however many patients have it (the huddle board
    and the engine's warm-up read hundreds at once); a different document is its own."""
    first = await _enrol(conn, "SHARED-1", ("hypertension",))
    second = await _enrol(conn, "SHARED-2", ("hypertension",))
    other = await _enrol(conn, "OTHER-1", ("heart_failure",))
    found = await care_plans.plans(conn, [(first, 1), (second, 1), (other, 1), (other, 9)])
    assert set(found) == {(first, 1), (second, 1), (other, 1)}
    assert found[(first, 1)] is found[(second, 1)]
    assert found[(first, 1)] == plan_from_templates(["hypertension"])
    assert found[(other, 1)] == plan_from_templates(["heart_failure"])


async def test_the_plan_cache_keeps_the_recently_used_and_never_fewer_than_asked(
    conn: Conn,
) -> None:
    first = await _enrol(conn, "CACHED-1", ("hypertension",))
    second = await _enrol(conn, "CACHED-2", ("heart_failure",))
    third = await _enrol(conn, "CACHED-3", ("diabetes",))
    cache = care_plans.PlanCache(size=2)
    both = await cache.plans(conn, [(first, 1), (second, 1), (third, 1), (third, 9)])
    assert set(both) == {(first, 1), (second, 1), (third, 1)}
    assert len(cache) == 3  # all of one call, however small the cache
    again = await cache.plans(conn, [(first, 1)])
    assert again[(first, 1)] is both[(first, 1)]  # kept, not read again
    assert len(cache) == 2  # the least recently used dropped: second's
    assert (await cache.plans(conn, [(third, 1)]))[(third, 1)] is both[(third, 1)]
    assert (await cache.plans(conn, [(second, 1)]))[(second, 1)] is not both[(second, 1)]
