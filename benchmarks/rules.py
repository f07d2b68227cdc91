"""Rule-engine benchmark: alert latency under a steady stream, and the scheduled rules.

    python -m benchmarks.rules                 (or: make bench-rules)

Prints, in one run, against a throwaway database and a Mosquitto of its own:

(a) the p50/p99/max latency from a reading's arrival at the consumer (`Envelope.received_at`)
    to its alert being committed, at 1,000 readings/s from the devices of 10,000 patients
    who each hold 30 days of history: the service's own MqttConsumer, IngestService and
    RuleEngine in this process, wired as `rpm up` wires them, and a paced publisher in
    another process;
(b) the time `RuleEngine.check_missed()` takes over 100,000 patients, twice: the first
    run opens the missed-reading alerts, the second updates them.

docs/benchmarks.md has the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import pstats
import queue
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from benchmarks.ingest import (
    Broker,
    CpuSample,
    add_database_options,
    database_backends,
    mosquitto,
    throwaway_database,
)
from rpm.alerts.repository import AlertChange
from rpm.cli.serve import tune_garbage_collector
from rpm.config import BrokerAddress, DatabaseSettings, IngestSettings
from rpm.db.store import make_pool, prepare_schema
from rpm.health import Health
from rpm.ingest import pipeline
from rpm.ingest.consumer import ConsumerOptions, MqttConsumer
from rpm.ingest.pipeline import ReadingRow
from rpm.ingest.repository import Connection
from rpm.ingest.service import AfterCommit, IngestService
from rpm.rules.engine import RuleEngine
from rpm.rules.handoff import RulesHandoff
from rpm.rules.repository import NewReading
from rpm.rules.templates import plan_from_templates

# The targets, on a 2-core machine with the broker and the database beside us.
TARGET_P99_MS = 100.0
TARGET_MISSED_S = 5.0

# The plans of the patients: everyone streaming has all three templates; the others one
# of these, by patient id.
FULL = ("hypertension", "heart_failure", "diabetes")
VARIANTS: tuple[tuple[str, ...], ...] = (
    FULL,
    ("hypertension",),
    ("hypertension", "diabetes"),
    ("hypertension", "heart_failure"),
)
TIME_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
# Each patient's devices, in id order: device id = 3 * (patient id - 1) + slot.
DEVICE_SLOTS = (
    (1, "blood_pressure_cuff", "blood_pressure", "BP"),
    (2, "weight_scale", "body_weight", "WS"),
    (3, "glucometer", "blood_glucose", "GM"),
)
# Readings a day of each kind (the shares of the live stream follow them): BP twice,
# weight once, glucose three times.
PER_DAY = {"blood_pressure": 2, "body_weight": 1, "blood_glucose": 3}


def device_id(patient: int, slot: int) -> int:
    return 3 * (patient - 1) + slot


def serial(patient: int, slot: int) -> str:
    return f"RB-{patient}-{DEVICE_SLOTS[slot - 1][3]}"


# Each patient's usual values: the same formulas in SQL (seeding) and in Python (stream).
def usual_systolic(patient: int) -> int:
    return 112 + patient * 7919 % 22  # 112 to 133: a mean below stage 2's 140


def usual_weight(patient: int) -> int:
    return 60 + patient * 31 % 60


def usual_glucose(patient: int) -> int:
    return 100 + patient * 13 % 60


# --- seeding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    patients: int  # in all: the missed-readings check covers them
    streaming: int  # the first ones: 30 days of history, and the live stream
    history_days: int
    lapsed: float  # share of all patients who have stopped measuring (due for the check)


def seed(url: str, population: Population) -> dict[str, float]:
    """Patients, devices, assignments, plans and history, set-based. Seconds per step."""
    steps: dict[str, float] = {}
    n, active = population.patients, population.streaming
    lapsed = round(population.lapsed * n)
    with psycopg.connect(url, autocommit=True) as conn:

        def step(name: str, query: str, params: Sequence[object] | None = None) -> None:
            started = time.perf_counter()
            conn.execute(query, params)
            steps[name] = steps.get(name, 0.0) + time.perf_counter() - started

        # Seeded data is consistent by construction: skip the foreign-key triggers (a
        # superuser's session setting) where we may, as a bulk load would.
        with suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")
        zones = list(TIME_ZONES)
        step(
            "patients",
            "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at)"
            " SELECT 'RB-' || g, 'Bench', 'Patient ' || g, (%s::text[])[1 + g %% %s],"
            "        now() - CASE WHEN g <= %s THEN interval '60 days'"
            "                     ELSE (10 + g %% 50) * interval '1 day' END"
            " FROM generate_series(1, %s) g",
            [zones, len(zones), active, n],
        )
        row = conn.execute("SELECT min(id), max(id) FROM patient").fetchone()
        assert row == (1, n), f"patient ids {row}: expected 1 to {n}"
        step(
            "devices",
            "INSERT INTO device (serial, kind)"
            " SELECT 'RB-' || g || '-' || s.code, s.kind"
            " FROM generate_series(1, %s) g,"
            "      unnest(%s::int[], %s::text[], %s::text[]) AS s(slot, kind, code)"
            " ORDER BY g, s.slot",
            [
                n,
                [s[0] for s in DEVICE_SLOTS],
                [s[1] for s in DEVICE_SLOTS],
                [s[3] for s in DEVICE_SLOTS],
            ],
        )
        row = conn.execute("SELECT min(id), max(id) FROM device").fetchone()
        assert row == (1, 3 * n), f"device ids {row}: expected 1 to {3 * n}"
        step(
            "devices",
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " SELECT d.id, (d.id - 1) / 3 + 1, p.enrolled_at"
            " FROM device d JOIN patient p ON p.id = (d.id - 1) / 3 + 1",
        )
        for number, templates in enumerate(VARIANTS):
            plan = plan_from_templates(templates)
            # The streaming patients all have the full plan; the others a variant by id.
            which = "(g <= %s OR g %% %s = %s)" if number == 0 else "(g > %s AND g %% %s = %s)"
            params = [active, len(VARIANTS), number]
            step(
                "plans",
                "INSERT INTO care_plan_version (patient_id, version, document, templates,"
                " author, reason)"
                " SELECT g, 1, %s, %s, 'benchmark', 'seeded' FROM generate_series(1, %s) g"
                f" WHERE {which}",
                [Jsonb(plan.model_dump(mode="json")), list(templates), n, *params],
            )
            for rule in plan.missed_rules():
                step(
                    "plans",
                    "INSERT INTO missed_reading_rule (patient_id, rule_id, expects, days,"
                    " plan_version, severity, advice)"
                    " SELECT g, %s, %s, %s, 1, %s, %s FROM generate_series(1, %s) g"
                    f" WHERE {which}",
                    [
                        rule.id,
                        [k.value for k in rule.expects],
                        rule.days,
                        rule.severity.value,
                        rule.advice,
                        n,
                        *params,
                    ],
                )
        step(
            "plans",
            "INSERT INTO care_plan (patient_id, version) SELECT patient_id, 1"
            " FROM care_plan_version",
        )
        _seed_history(step, population, lapsed)
        step(
            "devices last seen",  # as ingest keeps it
            "UPDATE device d SET last_seen_at = r.at FROM"
            " (SELECT device_id, max(received_at) AS at FROM reading GROUP BY device_id) r"
            " WHERE d.id = r.device_id",
        )
        step("vacuum analyze", "VACUUM ANALYZE")
        step("checkpoint", "CHECKPOINT")
    return steps


_INSERT_READING = """
INSERT INTO reading (device_id, kind, measured_at, patient_id, received_at,
                     measured_utc_offset_min, systolic_mmhg, diastolic_mmhg, pulse_bpm,
                     weight_kg, glucose_mg_dl, meal_context, original, source)
SELECT 3 * (p - 1) + {slot}, '{kind}', t, p, t, -300, {values},
       '{{"seeded": true}}'::jsonb, 'native'
FROM generate_series({first}, {last}) p,
     LATERAL (SELECT at AS t FROM ({times}) AS times(at)) AS w
"""
_VALUES = {
    "blood_pressure": "112 + p * 7919 % 22 + round(random() * 16 - 8),"
    " 72 + p % 10 + round(random() * 10 - 5), 62 + p % 20 + round(random() * 10 - 5),"
    " NULL, NULL, NULL",
    "body_weight": "NULL, NULL, NULL, 60 + p * 31 % 60 + round((random() * 0.6 - 0.3)::numeric, 1),"
    " NULL, NULL",
    "blood_glucose": "NULL, NULL, NULL, NULL, 100 + p * 13 % 60 + round(random() * 50 - 25),"
    " (ARRAY['fasting', 'after_meal', 'before_meal', 'bedtime'])[1 + (random() * 3)::int]",
}


Step = Callable[[str, str], None]


def _seed_history(step: Step, population: Population, lapsed: int) -> None:
    """The streaming patients: `history_days` of readings up to a few hours ago. The
    others: two readings of each kind in the last two days, but the lapsed ones (the
    last `lapsed` patients): half none since enrolment, half their last 5 to 9 days ago."""
    n, active, days = population.patients, population.streaming, population.history_days
    regular_last = n - lapsed
    never_from = n - lapsed // 2 + 1
    for slot, _, kind, _ in DEVICE_SLOTS:
        every = 24 // PER_DAY[kind]
        # Streaming patients: readings every `every` hours, jittered, from `days` ago.
        times = (
            f"SELECT now() - interval '{days} days'"
            f" + (i * {every} + {slot - 1}) * interval '1 hour' + random() * interval '40 minutes'"
            f" FROM generate_series(0, {days * PER_DAY[kind] - 1}) i"
        )
        query = _INSERT_READING.format(
            slot=slot, kind=kind, values=_VALUES[kind], first=1, last=active, times=times
        )
        step("history: streaming patients", query)
        if regular_last > active:
            recent = (
                "VALUES (now() - interval '4 hours' - random() * interval '8 hours'),"
                " (now() - interval '28 hours' - random() * interval '8 hours')"
            )
            query = _INSERT_READING.format(
                slot=slot,
                kind=kind,
                values=_VALUES[kind],
                first=active + 1,
                last=regular_last,
                times=recent,
            )
            step("history: other patients", query)
        if never_from > regular_last + 1:
            stopped = (
                "VALUES (now() - (5 + p % 5) * interval '1 day' - random() * interval '8 hours'),"
                " (now() - (6 + p % 5) * interval '1 day' - random() * interval '8 hours')"
            )
            query = _INSERT_READING.format(
                slot=slot,
                kind=kind,
                values=_VALUES[kind],
                first=max(active, regular_last) + 1,
                last=never_from - 1,
                times=stopped,
            )
            step("history: other patients", query)


def table_count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


# --- the devices: a paced publisher in a process of its own -------------------------------


@dataclass(frozen=True)
class Stream:
    port: int
    rate: float  # readings a second, one reading a message
    seconds: float  # warm-up included
    patients: int  # the streaming ones: ids 1 to patients
    abnormal: float  # share of readings beyond a limit
    seed: int = 1


def live_reading(
    patient: int, rng: random.Random, abnormal: float
) -> tuple[int, dict[str, object]]:
    """A device slot and the reading it sends now; `abnormal` of them beyond a limit."""
    kind = rng.choices(list(PER_DAY), weights=list(PER_DAY.values()))[0]
    local = timezone(timedelta(hours=-5))
    item: dict[str, object] = {"kind": kind, "measured_at": datetime.now(local).isoformat()}
    odd = rng.random() < abnormal
    if kind == "blood_pressure":
        systolic = usual_systolic(patient) + rng.randint(-8, 8)
        diastolic = 72 + patient % 10 + rng.randint(-5, 5)
        pulse = 62 + patient % 20 + rng.randint(-5, 5)
        if odd:
            match rng.randrange(3):
                case 0:
                    systolic = rng.randint(181, 200)  # crisis
                case 1:
                    systolic, diastolic = rng.randint(75, 88), rng.randint(45, 60)  # low
                case _:
                    pulse = rng.randint(125, 140)
        item |= {"systolic": systolic, "diastolic": diastolic, "pulse": pulse, "unit": "mmHg"}
        return 1, item
    if kind == "body_weight":
        weight = (
            usual_weight(patient) + rng.uniform(-0.3, 0.3) + (rng.uniform(1.6, 2.5) if odd else 0)
        )
        return 2, item | {"weight": round(weight, 1), "unit": "kg"}
    glucose = usual_glucose(patient) + rng.randint(-25, 25)
    if odd:
        glucose = rng.choice((rng.randint(40, 65), rng.randint(260, 450)))
    return 3, item | {"glucose": glucose, "unit": "mg/dL", "meal": "before_meal"}


@dataclass(frozen=True)
class PacedRun:
    started_at: float  # epoch seconds of the first publication
    published: int
    acked: int
    seconds: float
    late_s: float  # how far the publisher fell behind its schedule, at most


def publish_paced(
    port: int,
    client_id: str,
    rate: float,
    seconds: float,
    message: Callable[[int], tuple[str, dict[str, object]]],
    started: multiprocessing.synchronize.Event,
) -> PacedRun:
    """Publish `message(i)` (topic, JSON body) at `rate` for `seconds`, QoS 1, and wait
    for the broker's acknowledgements. Run in a process of its own: it owns the signals."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C reaches the whole process group: the benchmark stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(0)
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    total = round(rate * seconds)
    started_at = time.time()
    started.set()
    t0 = time.monotonic()
    late = 0.0
    for i in range(total):
        due = t0 + i / rate
        ahead = due - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        else:
            late = max(late, -ahead)
        topic, item = message(i)
        client.publish(topic, json.dumps(item, separators=(",", ":")), qos=1)
    elapsed = time.monotonic() - t0
    deadline = time.monotonic() + 30
    while acked < total and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    return PacedRun(started_at, total, acked, elapsed, late)


def publish_stream(
    stream: Stream,
    started: multiprocessing.synchronize.Event,
    results: multiprocessing.queues.Queue[dict[str, float]],
) -> None:
    """Patients in a shuffled order, over and over (so the first `patients` readings
    reach every patient once), a reading a message, measured (stamped) as it is sent."""
    rng = random.Random(stream.seed)
    order = list(range(1, stream.patients + 1))
    rng.shuffle(order)

    def message(i: int) -> tuple[str, dict[str, object]]:
        patient = order[i % len(order)]
        slot, item = live_reading(patient, rng, stream.abnormal)
        return f"{pipeline.TOPIC_PREFIX}{serial(patient, slot)}/readings", item

    run = publish_paced(
        stream.port, "rpm-bench-rules-devices", stream.rate, stream.seconds, message, started
    )
    results.put(
        {"published": run.published, "acked": run.acked, "seconds": run.seconds,
         "late_s": run.late_s}
    )  # fmt: skip


# --- the service, in this process ---------------------------------------------------------


@dataclass
class Timings:
    """Per reading handed to the rules: (received at, alert committed at), epoch seconds,
    by its key (device id, kind, measured at as epoch seconds)."""

    committed: dict[tuple[int, str, float], tuple[float, float]] = field(default_factory=dict)
    batches: list[tuple[float, int]] = field(default_factory=list)  # (committed at, readings)
    opened: int = 0
    updated: int = 0


class TimedEngine(RuleEngine):
    """The service's engine, keeping what each evaluation wrote."""

    def __init__(self, pool: AsyncConnectionPool, timings: Timings) -> None:
        super().__init__(pool)
        self._timings = timings

    async def evaluate(
        self, ticket: int, readings: Mapping[int, Sequence[NewReading]]
    ) -> list[AlertChange]:
        changes = await super().evaluate(ticket, readings)
        opened = sum(1 for change in changes if change.opened)
        self._timings.opened += opened
        self._timings.updated += len(changes) - opened
        return changes


class TimedHandoff:
    """`RulesHandoff`, with the time its after-commit step (evaluation, alert commit)
    returned noted for every reading it evaluated."""

    def __init__(self, inner: RulesHandoff, timings: Timings) -> None:
        self._inner = inner
        self._timings = timings

    async def __call__(self, conn: Connection, rows: Sequence[ReadingRow]) -> AfterCommit | None:
        after_commit = await self._inner(conn, rows)
        if after_commit is None:
            return None
        evaluate = after_commit

        async def timed() -> None:
            await evaluate()
            done = time.time()
            for row in rows:
                key = (row.device_id, row.reading.kind.value, row.reading.measured_at.timestamp())
                self._timings.committed[key] = (row.received_at.timestamp(), done)
            self._timings.batches.append((done, len(rows)))

        return timed


@dataclass(frozen=True)
class Latencies:
    """Milliseconds, sorted."""

    values: list[float]

    def pct(self, p: float) -> float:
        if not self.values:
            return float("nan")
        return self.values[min(len(self.values) - 1, round(p / 100 * (len(self.values) - 1)))]

    def describe(self) -> str:
        if not self.values:
            return "none"
        return (
            f"p50 {self.pct(50):7.1f}  p99 {self.pct(99):7.1f}  max {self.values[-1]:7.1f} ms"
            f"  ({len(self.values):,} readings)"
        )


@dataclass(frozen=True)
class StreamResult:
    published: int
    acked: int
    publish_seconds: float
    publisher_late_s: float
    evaluated: int
    measured: int
    rate: float  # readings evaluated a second in the measured window
    arrival_all: Latencies
    arrival_alerting: Latencies
    publish_all: Latencies
    publish_alerting: Latencies
    warmup_all: Latencies
    warmup_alerting: Latencies
    batches: int
    mean_batch: float
    opened: int
    updated: int
    queued_left: int
    dead_letters: int
    cores: dict[str, float]


async def run_stream(
    url: str, broker: Broker, stream: Stream, warmup_s: float, profile: Path | None
) -> StreamResult:
    timings = Timings()
    pool = make_pool(url, DatabaseSettings(url=url))  # type: ignore[call-arg]
    await pool.open(wait=True)
    engine = TimedEngine(pool, timings)
    ingest = IngestService(
        pool,
        IngestSettings().time_limits(),  # type: ignore[call-arg]
        handoff=TimedHandoff(RulesHandoff(engine), timings),
    )
    health = Health()
    consumer = MqttConsumer(
        BrokerAddress("127.0.0.1", broker.port),
        ConsumerOptions(
            client_id="rpm-bench-rules",
            keepalive_s=30,
            shared_group="rpm",
            protocol=aiomqtt.ProtocolVersion.V5,
            batch_size=500,
        ),
        ingest,
        health,
    )
    # As the app starts up (`rpm.app`, with `rpm up`'s `on_warm`).
    await engine.warm()
    tune_garbage_collector()
    consuming = asyncio.create_task(consumer.run())
    profiler = cProfile.Profile() if profile is not None else None
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    results: multiprocessing.queues.Queue[dict[str, float]] = context.Queue()
    publisher = None
    try:
        async with asyncio.timeout(15):
            while not health.snapshot()["broker"]:
                if consuming.done():
                    consuming.result()
                await asyncio.sleep(0.05)
        publisher = context.Process(
            target=publish_stream, args=(stream, started, results), daemon=True
        )
        publisher.start()
        if not await asyncio.to_thread(started.wait, 30):
            raise SystemExit("the publisher did not start")
        t0 = time.time()
        measure_from = t0 + warmup_s
        cpu_groups = {
            "this process (consumer, ingest, rules)": [os.getpid()],
            "database": database_backends(url),
            "broker": [broker.pid],
            "publisher": [publisher.pid or 0],
        }
        cpu_start: CpuSample | None = None
        cpu_start_at = 0.0
        # Polled, not awaited in a thread: a thread blocked on the queue would hold up the
        # exit on Ctrl-C or SIGTERM.
        sent: dict[str, float] | None = None
        deadline = time.monotonic() + stream.seconds + 60
        # Until the publisher is done and every reading it sent is evaluated, or nothing
        # more has been for a few seconds.
        last_count, last_progress = 0, time.monotonic()
        while True:
            if consuming.done():
                consuming.result()
                raise SystemExit("the consumer stopped")
            if cpu_start is None and time.time() >= measure_from:
                cpu_start, cpu_start_at = CpuSample.take(cpu_groups), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
            count = len(timings.committed)
            if count != last_count:
                last_count, last_progress = count, time.monotonic()
            if sent is None:
                with suppress(queue.Empty):
                    sent = results.get_nowait()
            if sent is not None and (
                count >= sent["published"] or time.monotonic() - last_progress > 5
            ):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the publisher did not finish; {count} readings evaluated")
            await asyncio.sleep(0.05)
        if profiler is not None:
            profiler.disable()
        cpu_end = CpuSample.take(cpu_groups)
        cores = (
            cpu_end.cores_since(cpu_start, time.perf_counter() - cpu_start_at)
            if cpu_start is not None
            else {}
        )
        publisher.join(timeout=10)
    finally:
        consumer.stop()
        await asyncio.wait([consuming], timeout=10)
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        if publisher is not None and publisher.is_alive():
            publisher.terminate()
            publisher.join()
        await pool.close()
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)

    assert sent is not None
    alerting = await _alerting_keys(url, t0)
    queued_left = table_count(url, "rule_evaluation_queue")
    measured = {k: v for k, v in timings.committed.items() if k[2] >= measure_from}
    warmup = {k: v for k, v in timings.committed.items() if k[2] < measure_from}

    def latencies(
        items: dict[tuple[int, str, float], tuple[float, float]], start: int
    ) -> Latencies:
        # start: 0 from arrival at the consumer, or from publication (measured_at)
        return Latencies(
            sorted(
                (done - (received if start == 0 else key[2])) * 1000
                for key, (received, done) in items.items()
            )
        )

    def alerting_only(
        items: dict[tuple[int, str, float], tuple[float, float]],
    ) -> dict[tuple[int, str, float], tuple[float, float]]:
        return {k: v for k, v in items.items() if k in alerting}

    done_times = sorted(done for _, done in measured.values())
    window = done_times[-1] - done_times[0] if len(done_times) > 1 else 0.0
    in_window = [n for at, n in timings.batches if at >= measure_from]
    return StreamResult(
        published=int(sent.get("published", 0)),
        acked=int(sent.get("acked", 0)),
        publish_seconds=float(sent.get("seconds", 0.0)),
        publisher_late_s=float(sent.get("late_s", 0.0)),
        evaluated=len(timings.committed),
        measured=len(measured),
        rate=(len(measured) - 1) / window if window else 0.0,
        arrival_all=latencies(measured, 0),
        arrival_alerting=latencies(alerting_only(measured), 0),
        publish_all=latencies(measured, 1),
        publish_alerting=latencies(alerting_only(measured), 1),
        warmup_all=latencies(warmup, 0),
        warmup_alerting=latencies(alerting_only(warmup), 0),
        batches=len(in_window),
        mean_batch=statistics.mean(in_window) if in_window else 0.0,
        opened=timings.opened,
        updated=timings.updated,
        queued_left=queued_left,
        dead_letters=table_count(url, "rejected_message"),
        cores=cores,
    )


async def _alerting_keys(url: str, since: float) -> set[tuple[int, str, float]]:
    """Readings that opened or updated an alert: those counted into one (alert_trigger)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT device_id, kind, measured_at FROM alert_trigger WHERE measured_at >= %s",
            [datetime.fromtimestamp(since, UTC)],
        )
        return {(d, k, at.timestamp()) for d, k, at in await cursor.fetchall()}


# --- the scheduled rules ------------------------------------------------------------------


@dataclass(frozen=True)
class MissedRun:
    seconds: float
    changes: list[AlertChange]
    candidates: int  # (patient, rule, kind) rows the coarse SQL filter let through
    query_seconds: float  # that query alone, run apart

    @property
    def opened(self) -> int:
        return sum(1 for c in self.changes if c.opened)


async def run_missed(url: str, runs: int) -> list[MissedRun]:
    """`check_missed` over every patient, `runs` times in a row, by a fresh engine (its
    plan cache cold, as after a restart, for the first run only)."""
    from rpm.rules import repository

    pool = make_pool(url, DatabaseSettings(url=url))  # type: ignore[call-arg]
    await pool.open(wait=True)
    try:
        engine = RuleEngine(pool)
        results = []
        for _ in range(runs):
            async with pool.connection() as conn:
                started = time.perf_counter()
                candidates = await repository.missed_candidates(conn, datetime.now(UTC))
                query_seconds = time.perf_counter() - started
            started = time.perf_counter()
            changes = await engine.check_missed()
            seconds = time.perf_counter() - started
            results.append(MissedRun(seconds, changes, len(candidates), query_seconds))
        return results
    finally:
        await pool.close()


# --- the run ------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(result: StreamResult, missed: Sequence[MissedRun], population: Population) -> bool:
    p99 = result.arrival_alerting.pct(99)
    missed_s = max(run.seconds for run in missed)
    print()
    print(
        f"stream: published {result.published:,} readings in {result.publish_seconds:.1f} s"
        f" ({result.published / result.publish_seconds:,.0f}/s; {result.acked:,} PUBACKs;"
        f" publisher at most {result.publisher_late_s * 1000:.0f} ms behind its schedule);"
        f" evaluated {result.evaluated:,}"
    )
    print(
        f"measured window: {result.measured:,} readings evaluated at {result.rate:,.0f}/s,"
        f" {result.batches:,} batches of {result.mean_batch:.1f} readings on average;"
        f" alerts opened {result.opened:,}, updated {result.updated:,} (whole run)"
    )
    if result.cores:
        print(
            "cores while measuring: "
            + ", ".join(f"{name} {value:.2f}" for name, value in result.cores.items())
        )
    print()
    print("latency to the alert committed, in the measured window:")
    print(f"  from arrival at the consumer, readings that opened or updated an alert:  "
          f"{result.arrival_alerting.describe()}")  # fmt: skip
    print(f"  from arrival at the consumer, every reading evaluated:                   "
          f"{result.arrival_all.describe()}")  # fmt: skip
    print(f"  from publication (device clock), readings that opened or updated an alert: "
          f"{result.publish_alerting.describe()}")  # fmt: skip
    print(f"  from publication (device clock), every reading evaluated:                "
          f"{result.publish_all.describe()}")  # fmt: skip
    print(f"  warm-up (the first seconds), from arrival, alerting:                     "
          f"{result.warmup_alerting.describe()}")  # fmt: skip
    print(f"  warm-up, from arrival, every reading:                                    "
          f"{result.warmup_all.describe()}")  # fmt: skip
    print()
    for number, run in enumerate(missed, 1):
        cache = "plans parsed" if number == 1 else "plans cached"
        print(
            f"missed-readings check, run {number} ({cache}): {run.seconds:.2f} s over"
            f" {population.patients:,} patients; {len(run.changes):,} alerts written"
            f" ({run.opened:,} opened, {len(run.changes) - run.opened:,} updated);"
            f" {run.candidates:,} candidate rows, whose query alone takes"
            f" {run.query_seconds:.2f} s"
        )
    print()
    ok_latency = p99 <= TARGET_P99_MS
    ok_missed = missed_s <= TARGET_MISSED_S
    queue_ok = result.queued_left == 0
    complete = result.evaluated >= result.published > 0 and not result.dead_letters
    print(f"p99 arrival -> alert committed   {p99:8.1f} ms   <= {TARGET_P99_MS:.0f} ms  "
          f"{_verdict(ok_latency)}")  # fmt: skip
    print(f"missed-readings check (slowest)  {missed_s:8.2f} s    <= {TARGET_MISSED_S:.0f} s    "
          f"{_verdict(ok_missed)}")  # fmt: skip
    print(f"batches left in rule_evaluation_queue: {result.queued_left}  {_verdict(queue_ok)}")
    print(f"every published reading evaluated: {result.evaluated:,} of {result.published:,},"
          f" {result.dead_letters} dead letters  {_verdict(complete)}")  # fmt: skip
    met = ok_latency and ok_missed and queue_ok and complete
    print(f"overall: {_verdict(met)}")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rules", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--patients", type=int, default=100_000, help="patients in all")
    parser.add_argument(
        "--streaming", type=int, default=10_000, help="patients with history who send readings"
    )
    parser.add_argument("--history-days", type=int, default=30, help="their days of history")
    parser.add_argument(
        "--lapsed",
        type=float,
        default=0.2,
        help="share of all patients who stopped measuring (due for the missed check)",
    )
    parser.add_argument("--rate", type=float, default=1000, help="readings a second")
    parser.add_argument("--duration", type=float, default=60, help="seconds measured")
    parser.add_argument(
        "--warmup", type=float, default=10, help="seconds before, not in the figures"
    )
    parser.add_argument(
        "--abnormal", type=float, default=0.03, help="share of readings beyond a limit"
    )
    parser.add_argument("--missed-runs", type=int, default=2, help="runs of the missed check")
    add_database_options(parser)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="profile this process (consumer, ingest, rules) over the measured window",
    )
    args = parser.parse_args(argv)
    population = Population(args.patients, args.streaming, args.history_days, args.lapsed)
    if not 1 <= args.streaming <= args.patients or args.rate <= 0 or args.duration <= 0:
        parser.error("need 1 <= --streaming <= --patients, and a positive --rate and --duration")
    if args.streaming + round(args.lapsed * args.patients) > args.patients:
        parser.error("--lapsed leaves too few patients for --streaming")

    # SIGTERM as Ctrl-C: asyncio.run then cancels the run's task, whose clean-up runs (the
    # consumer stops, the publisher is terminated), and the ExitStack drops the database
    # and stops the broker.
    # (A shell without job control starts background commands with SIGINT ignored.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rpm-bench-")))
            url = stack.enter_context(throwaway_database(args.database_url, args.keep_database))
            asyncio.run(prepare_schema(url, DatabaseSettings(url=url)))  # type: ignore[call-arg]
            started = time.perf_counter()
            steps = seed(url, population)
            readings = table_count(url, "reading")
            print(
                f"seeded {population.patients:,} patients ({population.streaming:,} with"
                f" {population.history_days} days of history), {3 * population.patients:,} devices,"
                f" {readings:,} readings in {time.perf_counter() - started:.0f} s ("
                + ", ".join(f"{name} {s:.1f} s" for name, s in steps.items())
                + f"); {os.cpu_count()} CPUs",
                flush=True,
            )
            broker = stack.enter_context(mosquitto(workdir))
            stream = Stream(
                broker.port,
                args.rate,
                args.warmup + args.duration,
                population.streaming,
                args.abnormal,
            )
            print(
                f"streaming {args.rate:,.0f} readings/s for {args.warmup:.0f} s of warm-up and"
                f" {args.duration:.0f} s measured, {args.abnormal:.0%} beyond a limit",
                flush=True,
            )
            result = asyncio.run(run_stream(url, broker, stream, args.warmup, args.profile))
            missed = asyncio.run(run_missed(url, args.missed_runs))
    except KeyboardInterrupt:
        print("interrupted: the database was dropped and the broker stopped", file=sys.stderr)
        return 130
    met = report(result, missed, population)
    if args.profile is not None:
        print()
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(40)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
