"""The alert-burden benchmark decides what the service decides: a few simulated patients
played through the real RuleEngine on the real PostgreSQL (readings stored upload by
upload, each batch evaluated, the nurse resolving alerts on the benchmark's schedule, the
missed-readings check at local midnight) raise the very alerts the fast-forwarded replay
of `benchmarks.burden` raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from benchmarks.burden import RESOLVE_AFTER_HOURS, Store, missed_checks, replay
from rpm.devices import registry
from rpm.devices.model import DeviceKind
from rpm.rules import care_plans
from rpm.rules import repository as rules_repository
from rpm.rules.engine import RuleEngine
from rpm.rules.evaluate import ReadingKey
from rpm.rules.plan import Severity
from rpm.rules.repository import NewReading, QueueEntry
from rpm.rules.templates import plan_from_templates
from simulators.physiology import Condition
from simulators.population import HOUR_S, KINDS, BpProfile, Patient, simulate

Conn = psycopg.AsyncConnection[TupleRow]
DAYS = 28
DEVICE_OF = (DeviceKind.BLOOD_PRESSURE_CUFF, DeviceKind.WEIGHT_SCALE, DeviceKind.GLUCOMETER)
COLUMNS = ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "weight_kg", "glucose_mg_dl")


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) as pool:
        yield pool


async def _enrol(conn: Conn, patient: Patient, start: datetime) -> tuple[int, dict[int, int]]:
    cursor = await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at)"
        " VALUES (%s, 'Sim', 'Patient', %s, %s) RETURNING id",
        [f"BR-{patient.number}", patient.time_zone, start],
    )
    row = await cursor.fetchone()
    assert row is not None
    patient_id = int(row[0])
    names = sorted(c.value for c in patient.conditions)
    await care_plans.save(
        conn, patient_id, plan_from_templates(names), "cm-1", "enrolment", None, names
    )
    devices = {}
    for kind in sorted(set(patient.readings.kinds.tolist())):
        serial = f"BR-{patient.number}-{kind}"
        devices[kind] = (await registry.register(conn, serial, DEVICE_OF[kind])).id
        await registry.assign(conn, serial, patient_id, start)
    return patient_id, devices


async def test_the_replay_raises_the_alerts_the_rule_engine_raises(
    conn: Conn, pool: AsyncConnectionPool
) -> None:
    population = simulate(patients=120, days=DAYS, seed=4)
    # One time zone: the service's missed-readings check runs for everyone at once. Among
    # them patients whose BP stays high (a mean rule's episode outlives its window, and
    # the nurse resolves it) and heart-failure patients (weight-change rules).
    chicago = [p for p in population.patients if p.time_zone == "America/Chicago"]
    high = [p.number for p in chicago if p.bp_profile == BpProfile.TREATED_HIGH][:3]
    failing = [p.number for p in chicago if Condition.HEART_FAILURE in p.conditions][:2]
    others = [p.number for p in chicago if p.number not in high + failing][:3]
    patients = [p for p in chicago if p.number in {*high, *failing, *others}]
    start = population.start
    now = start
    engine = RuleEngine(pool, clock=lambda: now)
    steps: list[tuple[float, int, int, np.ndarray | None]] = []
    enrolled = {}
    for p in patients:
        enrolled[p.number] = await _enrol(conn, p, start)
        store = Store(p, start)
        steps += [(at, 0, p.number, rows) for at, rows in store.batches()]
    checks = sorted({t for p in patients for t in missed_checks(p, DAYS)})
    steps += [(at, 1, 0, None) for at in checks]
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    stores = {p.number: Store(p, start) for p in patients}
    resolve_at: dict[int, float] = {}
    for at, _, number, rows in steps:
        now = start + timedelta(seconds=at)
        for alert_id, due in list(resolve_at.items()):
            if due <= at:
                await conn.execute(
                    "UPDATE alert SET status = 'resolved', resolved_at = now() WHERE id = %s",
                    [alert_id],
                )
                del resolve_at[alert_id]
        if rows is None:
            changes = await engine.check_missed()
        else:
            patient_id, devices = enrolled[number]
            store = stores[number]
            new = []
            async with conn.transaction():
                for i in rows:
                    kind = int(store.kinds[i])
                    row = store.row(int(i))
                    key = ReadingKey(devices[kind], KINDS[kind].value, row.key.measured_at)
                    values = row._replace(key=key)
                    await conn.execute(
                        "INSERT INTO reading (device_id, kind, measured_at, patient_id, original,"
                        f" source, {', '.join(COLUMNS)}, meal_context)"
                        " VALUES (%s, %s, %s, %s, '{}', 'native', %s, %s, %s, %s, %s, %s)",
                        [key.device_id, key.kind, key.measured_at, patient_id, *values[1:]],
                    )
                    new.append(NewReading(patient_id, key, values))
                ticket = await rules_repository.enqueue(
                    conn,
                    QueueEntry(
                        [patient_id] * len(new),
                        [r.key.device_id for r in new],
                        [r.key.kind for r in new],
                        [r.key.measured_at for r in new],
                    ),
                )
            changes = await engine.evaluate(ticket, {patient_id: new})
        for change in changes:
            if change.opened:
                resolve_at[change.alert_id] = at + RESOLVE_AFTER_HOURS[change.severity] * HOUR_S

    raised = 0
    for p in patients:
        patient_id, _ = enrolled[p.number]
        cursor = await conn.execute(
            "SELECT rule_id, severity, first_triggered_at, last_triggered_at FROM alert"
            " WHERE patient_id = %s",
            [patient_id],
        )
        service = sorted((r, Severity(s), f, last) for r, s, f, last in await cursor.fetchall())
        names = sorted(c.value for c in p.conditions)
        replayed = sorted(
            (
                a.rule_id,
                a.severity,
                start + timedelta(seconds=a.first),
                start + timedelta(seconds=a.last),
            )
            for a in replay(p, plan_from_templates(names), start, DAYS).alerts
        )
        assert replayed == service, f"patient {p.number}"
        raised += len(service)
    assert raised >= 10
