"""Scale benchmark: every page and API call a nurse or care manager uses, over 100,000
enrolled patients with 90 days of readings.

    python -m benchmarks.scale [--patients 100000] [--runs 30] [--program-runs 7]
                               [--seeded URL] [--only NAME] [--view team|program]
                               [--keep-database]
                                                               (or: make bench-scale)

Seeds a throwaway database (COPY in text format, straight into the tables) with care
teams of 500 patients, each patient with a care plan from the guideline templates, a
device per kind the plan expects, 90 days of readings (one or two on most days; some
patients read on half their days, some stopped a few days ago, a few never started),
open and resolved alerts, staff time logs and notes. Then drives the whole app in
process (`rpm.app.create_app`'s routes through `httpx2.ASGITransport`, without its
lifespan: nothing else of the service runs) as real signed-in users: a care manager of
one team (500 patients; the API with a bearer token, the pages with a browser session)
and an admin (every patient). Each read is timed `--runs` times for the team and
`--program-runs` times for the admin, after one warm-up, and the p50/p99 printed against
the targets: 100 ms for a team's view, 1 s for the programme-wide one.

`--seeded URL` reuses a database seeded by an earlier run (`--keep-database` prints its
URL); `--only NAME` times one read (names as printed), `--view team|program` one view's.
docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx2
import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks.ingest import add_database_options, throwaway_database
from rpm.app import Wiring, create_app
from rpm.auth.passwords import hash_password
from rpm.cli.serve import tune_garbage_collector
from rpm.config import (
    BrokerAddress,
    DatabaseSettings,
    HttpSettings,
    IngestSettings,
    MqttSettings,
    RulesSettings,
    ServiceSettings,
    Settings,
)
from rpm.db.store import prepare_schema
from rpm.devices.model import ReadingKind
from rpm.health import Health
from rpm.rules.care_plans import PlanCache
from rpm.rules.templates import TEMPLATES, plan_from_templates

TEAM_SIZE = 500
DAYS = 90
TEAM_TARGET_MS = 100.0
PROGRAM_TARGET_MS = 1000.0
# Benchmark users' password: long enough for the strength check, and no secret.
PASSWORD = "a benchmark password, not a secret"

# Zones and their offsets from UTC in minutes (standard time: the seed's readings need
# only land near the patient's morning and evening).
ZONES = (
    ("America/New_York", -300),
    ("America/Chicago", -360),
    ("America/Los_Angeles", -480),
    ("Europe/London", 0),
    ("Asia/Kathmandu", 345),
)
# Patient g's templates by g % 10: mostly one condition, some two.
TEMPLATE_MIX = (
    ("hypertension",), ("hypertension",), ("hypertension",), ("hypertension",),
    ("heart_failure",), ("heart_failure",), ("diabetes",), ("diabetes",),
    ("hypertension", "heart_failure"), ("hypertension", "diabetes"),
)  # fmt: skip
DEVICE_OF = {
    ReadingKind.BLOOD_PRESSURE: "blood_pressure_cuff",
    ReadingKind.BODY_WEIGHT: "weight_scale",
    ReadingKind.BLOOD_GLUCOSE: "glucometer",
}
OUTCOMES = ("patient_contacted", "medication_adjusted", "no_action_needed",
            "measurement_or_device_error")  # fmt: skip
NOTES = (
    "Called the patient: cuff re-paired, readings should resume tomorrow.",
    "Discussed at huddle; recheck weight trend on Friday.",
    "Patient reports feeling well, taking medication as prescribed.",
)


def _escape(text: str) -> str:
    """A value for COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S+00")


@dataclass(frozen=True)
class Profile:
    """What the seed decides about patient g (1-based), from g alone."""

    number: int
    team: int
    zone: str
    offset_min: int
    templates: tuple[str, ...]
    # Chance of a reading on a day; the day they stopped (days ago; 0: still reading).
    pace: float
    stopped_days_ago: int
    status: str
    enrolled_days_ago: int

    @classmethod
    def of(cls, g: int) -> Profile:
        zone, offset = ZONES[g % len(ZONES)]
        habit = g % 20
        return cls(
            number=g,
            team=(g - 1) // TEAM_SIZE + 1,
            zone=zone,
            offset_min=offset,
            templates=TEMPLATE_MIX[g % 10],
            # Most read on nine days in ten; some on half their days (at risk); one in
            # twenty stopped 3-17 days ago; one in a hundred never started.
            pace=0.0 if g % 100 == 99 else 0.45 if habit in (14, 15, 16, 17) else 0.9,
            stopped_days_ago=3 + g % 15 if habit == 18 else 0,
            status="discharged" if g % 100 == 98 else "paused" if g % 100 == 97 else "active",
            enrolled_days_ago=DAYS + g % 45,
        )

    @property
    def kinds(self) -> list[ReadingKind]:
        return [TEMPLATES[t].expects for t in self.templates]


class Seeder:
    """The seed, written with COPY (text format) a table at a time."""

    def __init__(self, url: str, patients: int, now: datetime) -> None:
        self.url = url
        self.patients = patients
        self.now = now.replace(microsecond=0)
        self.teams = (patients + TEAM_SIZE - 1) // TEAM_SIZE
        self.profiles = [Profile.of(g) for g in range(1, patients + 1)]
        self.rng = random.Random(20261206)
        self.plans = {names: plan_from_templates(names) for names in dict.fromkeys(TEMPLATE_MIX)}
        # Staff of team t: three nurses and a care manager, ids 4(t-1)+1 .. 4t.
        self.staff_per_team = 4

    def run(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with psycopg.connect(self.url, autocommit=True) as conn:
            for name, step in (
                ("care teams and staff", self._teams),
                ("patients", self._patients),
                ("care plans", self._plans),
                ("devices", self._devices),
                ("readings", self._readings),
                # COPY bypasses ingest, which keeps the days with readings: count them once.
                ("reading days", self._reading_days),
                ("alerts", self._alerts),
                ("time logs", self._time_logs),
                ("notes", self._notes),
            ):
                started = time.perf_counter()
                counts[name] = step(conn)
                print(
                    f"  {name:<22} {counts[name]:>12,} rows  {time.perf_counter() - started:6.1f} s"
                )
            started = time.perf_counter()
            conn.execute("VACUUM ANALYZE")
            print(f"  {'vacuum analyze':<22} {'':>12}       {time.perf_counter() - started:6.1f} s")
        return counts

    def _reading_days(self, conn: psycopg.Connection) -> int:
        conn.execute("SELECT reading_day_rebuild()")
        row = conn.execute("SELECT count(*) FROM reading_day").fetchone()
        return int(row[0]) if row else 0

    def _copy(self, conn: psycopg.Connection, statement: str, lines: Iterator[str]) -> int:
        rows = 0
        buffer = io.StringIO()
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for line in lines:
                buffer.write(line)
                rows += 1
                if buffer.tell() > 1 << 20:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        return rows

    def _teams(self, conn: psycopg.Connection) -> int:
        self._copy(
            conn,
            "COPY care_team (name) FROM STDIN",
            (f"Team {t:03d}\n" for t in range(1, self.teams + 1)),
        )

        def staff() -> Iterator[str]:
            for t in range(1, self.teams + 1):
                for k in range(1, self.staff_per_team):
                    yield f"t{t}-nurse-{k}\tNurse {k} of team {t}\tnurse\n"
                yield f"t{t}-cm\tCare manager of team {t}\tcare_manager\n"

        rows = self._copy(conn, "COPY staff (username, display_name, role) FROM STDIN", staff())
        self._copy(
            conn,
            "COPY care_team_member (care_team_id, staff_id) FROM STDIN",
            (
                f"{t}\t{self.staff_per_team * (t - 1) + k}\n"
                for t in range(1, self.teams + 1)
                for k in range(1, self.staff_per_team + 1)
            ),
        )
        return rows

    def _patients(self, conn: psycopg.Connection) -> int:
        def lines() -> Iterator[str]:
            for p in self.profiles:
                enrolled = self.now - timedelta(days=p.enrolled_days_ago, minutes=p.number % 600)
                yield (
                    f"BENCH-{p.number:06d}\tBench\tPatient {p.number}\t{p.zone}\t{p.status}\t"
                    f"{_ts(enrolled)}\t{p.team}\n"
                )

        rows = self._copy(
            conn,
            "COPY patient (external_ref, given_name, family_name, time_zone, status,"
            " enrolled_at, care_team_id) FROM STDIN",
            lines(),
        )
        (top,) = conn.execute("SELECT max(id) FROM patient").fetchone() or (0,)
        assert top == self.patients, "the seed needs a fresh database (patient ids 1..N)"
        return rows

    def _plans(self, conn: psycopg.Connection) -> int:
        documents = {
            names: _escape(json.dumps(plan.model_dump(mode="json")))
            for names, plan in self.plans.items()
        }
        rows = self._copy(
            conn,
            "COPY care_plan_version (patient_id, version, document, templates, author, reason)"
            " FROM STDIN",
            (
                f"{p.number}\t1\t{documents[p.templates]}\t{{{','.join(p.templates)}}}\t"
                "bench-cm\tEnrolment\n"
                for p in self.profiles
            ),
        )
        self._copy(
            conn,
            "COPY care_plan (patient_id, version) FROM STDIN",
            (f"{p.number}\t1\n" for p in self.profiles),
        )

        def missed() -> Iterator[str]:
            for p in self.profiles:
                for rule in self.plans[p.templates].missed_rules():
                    expects = ",".join(k.value for k in rule.expects)
                    yield (
                        f"{p.number}\t{rule.id}\t{{{expects}}}\t{rule.days}\t1\t"
                        f"{rule.severity.value}\t{_escape(rule.advice)}\n"
                    )

        self._copy(
            conn,
            "COPY missed_reading_rule (patient_id, rule_id, expects, days, plan_version,"
            " severity, advice) FROM STDIN",
            missed(),
        )
        return rows

    def _devices(self, conn: psycopg.Connection) -> int:
        self.device_ids: dict[tuple[int, ReadingKind], int] = {}
        order = [(p, kind) for p in self.profiles for kind in p.kinds]
        for i, (p, kind) in enumerate(order, start=1):
            self.device_ids[(p.number, kind)] = i
        rows = self._copy(
            conn,
            "COPY device (serial, kind) FROM STDIN",
            (f"BENCH-{DEVICE_OF[kind]}-{p.number:06d}\t{DEVICE_OF[kind]}\n" for p, kind in order),
        )
        self._copy(
            conn,
            "COPY device_assignment (device_id, patient_id, assigned_at) FROM STDIN",
            (
                f"{self.device_ids[(p.number, kind)]}\t{p.number}\t"
                f"{_ts(self.now - timedelta(days=p.enrolled_days_ago))}\n"
                for p, kind in order
            ),
        )
        return rows

    def _read_days(self, p: Profile) -> list[int]:
        """Days ago (DAYS .. 1) with readings, oldest first."""
        rng = random.Random(p.number)
        return [
            ago for ago in range(DAYS, 0, -1) if ago > p.stopped_days_ago and rng.random() < p.pace
        ]

    def _readings(self, conn: psycopg.Connection) -> int:
        midnight = self.now.replace(hour=0, minute=0, second=0)
        now_minute = self.now.hour * 60 + self.now.minute
        day_text = [
            (midnight - timedelta(days=ago)).strftime("%Y-%m-%d") for ago in range(DAYS + 2)
        ]

        def lines() -> Iterator[str]:
            for p in self.profiles:
                rng = random.Random(-p.number)
                systolic = 165.0 if p.number % 25 == 0 else 118.0 + p.number % 30
                weight = 70.0 + p.number % 40
                glucose = 100.0 + p.number % 60
                for kind in p.kinds:
                    device = self.device_ids[(p.number, kind)]
                    for ago in self._read_days(p):
                        # A morning reading, and on two days in five an evening one; in UTC.
                        times = [7 * 60 + rng.randrange(120)]
                        if rng.random() < 0.4:
                            times.append(19 * 60 + rng.randrange(120))
                        for local_min in times:
                            utc_min = local_min - p.offset_min
                            day = ago - utc_min // (24 * 60)
                            minute = utc_min % (24 * 60)
                            if day == 0 and minute >= now_minute:
                                continue  # not yet measured
                            at = f"{day_text[day]} {minute // 60:02d}:{minute % 60:02d}:00+00"
                            values = "\\N\t\\N\t\\N\t\\N\t\\N"
                            if kind is ReadingKind.BLOOD_PRESSURE:
                                s = systolic + rng.gauss(0, 9)
                                values = (
                                    f"{s:.0f}\t{s * 0.62:.0f}\t{68 + rng.gauss(0, 6):.0f}\t\\N\t\\N"
                                )
                            elif kind is ReadingKind.BODY_WEIGHT:
                                w = (
                                    weight
                                    + rng.gauss(0, 0.4)
                                    + (0.05 * (DAYS - ago) if p.number % 9 == 0 else 0)
                                )
                                values = f"\\N\t\\N\t\\N\t{w:.2f}\t\\N"
                            elif kind is ReadingKind.BLOOD_GLUCOSE:
                                values = f"\\N\t\\N\t\\N\t\\N\t{glucose + rng.gauss(0, 25):.0f}"
                            yield (
                                f"{device}\t{kind.value}\t{at}\t{p.number}\t{at}\t{p.offset_min}\t"
                                f"{values}\t{{}}\tnative\n"
                            )

        return self._copy(
            conn,
            "COPY reading (device_id, kind, measured_at, patient_id, received_at,"
            " measured_utc_offset_min, systolic_mmhg, diastolic_mmhg, pulse_bpm, weight_kg,"
            " glucose_mg_dl, original, source) FROM STDIN",
            lines(),
        )

    def _alerts(self, conn: psycopg.Connection) -> int:
        """Open alerts on about one patient in six (a missed-readings alert for those who
        stopped), and two to four resolved ones a patient over the 90 days."""

        def lines() -> Iterator[str]:
            for p in self.profiles:
                rng = random.Random(p.number * 7)
                plan = self.plans[p.templates]
                reading_rules = [r.id for r in plan.reading_rules()]
                nurse = self.staff_per_team * (p.team - 1) + 1
                for n in range(2 + p.number % 3):
                    opened = self.now - timedelta(days=rng.uniform(2, DAYS), minutes=n)
                    closed = opened + timedelta(hours=rng.uniform(1, 30))
                    rule = rng.choice(reading_rules)
                    yield (
                        f"{p.number}\t{rule}\t1\thigh\tresolved\tBlood pressure above limit\t"
                        f"Blood pressure above limit\t1\t{_ts(opened)}\t{_ts(opened)}\t"
                        f"{_ts(opened)}\t{_ts(closed)}\t{_ts(closed)}\tt{p.team}-nurse-1\t"
                        f"{rng.choice(OUTCOMES)}\tReviewed\t{_ts(opened)}\tt{p.team}-nurse-1\t\\N\n"
                    )
                open_rules = []
                if p.stopped_days_ago and p.status == "active":
                    open_rules.append(("missed_readings", "warning"))
                if p.number % 6 == 0 and p.status == "active":
                    open_rules.append((reading_rules[p.number % len(reading_rules)],
                                       ("warning", "high", "critical")[p.number % 3]))  # fmt: skip
                for rule, severity in open_rules:
                    opened = self.now - timedelta(hours=rng.uniform(0.5, 72))
                    assigned = str(nurse) if p.number % 4 == 0 else "\\N"
                    yield (
                        f"{p.number}\t{rule}\t1\t{severity}\topen\tOut of range\tOut of range\t"
                        f"{1 + p.number % 4}\t{_ts(opened)}\t{_ts(opened)}\t{_ts(opened)}\t"
                        f"{_ts(opened)}\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t{assigned}\n"
                    )

        return self._copy(
            conn,
            "COPY alert (patient_id, rule_id, plan_version, severity, status, message,"
            " latest_message, occurrences, first_triggered_at, last_triggered_at, opened_at,"
            " updated_at, resolved_at, resolved_by, outcome, resolution_note, acknowledged_at,"
            " acknowledged_by, assigned_to) FROM STDIN",
            lines(),
        )

    def _time_logs(self, conn: psycopg.Connection) -> int:
        """About two entries a month a patient (10 to 25 minutes, a third of them calls),
        by the team's staff, none of one person's overlapping."""

        def lines() -> Iterator[str]:
            for team in range(1, self.teams + 1):
                members = self.profiles[(team - 1) * TEAM_SIZE : team * TEAM_SIZE]
                entries = [
                    (self.rng.randrange(1, DAYS), p.number)
                    for p in members
                    if p.status != "discharged" or p.number % 2
                    for _ in range(6)
                ]
                entries.sort()
                # Each person's day starts at 13:00 UTC and fills up an entry at a time.
                clock: dict[tuple[int, int], datetime] = {}
                for i, (ago, patient) in enumerate(entries):
                    k = i % self.staff_per_team
                    staff = self.staff_per_team * (team - 1) + 1 + k
                    role = "care_manager" if k == self.staff_per_team - 1 else "nurse"
                    day = (self.now - timedelta(days=ago)).replace(hour=13, minute=0, second=0)
                    start = clock.get((staff, ago), day)
                    minutes = 10 + (patient + i) % 16
                    end = start + timedelta(minutes=minutes)
                    clock[(staff, ago)] = end + timedelta(minutes=5)
                    interactive = "t" if i % 3 == 0 else "f"
                    yield (
                        f"{patient}\t{staff}\t{role}\t{_ts(start)}\t{_ts(end)}\t{interactive}\t"
                        f"Reviewed readings\t{_ts(end)}\tbench\n"
                    )

        return self._copy(
            conn,
            "COPY time_log (patient_id, staff_id, staff_role, started_at, ended_at,"
            " interactive, note, created_at, created_by) FROM STDIN",
            lines(),
        )

    def _notes(self, conn: psycopg.Connection) -> int:
        def lines() -> Iterator[str]:
            for p in self.profiles:
                for n in range(p.number % 3):
                    staff = self.staff_per_team * (p.team - 1) + 1 + n
                    at = self.now - timedelta(days=(p.number + n * 11) % DAYS, hours=n)
                    yield (
                        f"{p.number}\t{staff}\tnurse\t{NOTES[(p.number + n) % len(NOTES)]}\t"
                        f"{_ts(at)}\tt{p.team}-nurse-{1 + n}\n"
                    )

        return self._copy(
            conn,
            "COPY patient_note (patient_id, staff_id, staff_role, body, written_at,"
            " written_by) FROM STDIN",
            lines(),
        )


def add_users(url: str) -> None:
    """The benchmark's sign-ins: team 1's care manager and an admin."""
    password_hash = hash_password(PASSWORD)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO app_user (username, role, staff_id, password_hash, created_by)"
            " SELECT 'bench-cm', 'care_manager', id, %s, 'benchmark' FROM staff"
            " WHERE username = 't1-cm'"
            " UNION ALL SELECT 'bench-admin', 'admin', NULL, %s, 'benchmark'"
            " ON CONFLICT (username) DO NOTHING",
            [password_hash, password_hash],
        )


# --- the reads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    name: str
    who: str  # "team" (team 1's care manager) or "program" (the admin)
    path: str
    browser: bool  # a page (the session cookie) rather than the API (the bearer token)


def reads(patient: int, team: int, month: str) -> list[Read]:
    """Every read timed: the team's care manager's, then the admin's programme-wide."""
    fhir = f"/fhir/Observation?patient={patient}&date=ge{month}-01"
    per_team = [
        Read("worklist", "team", "/api/v1/alerts?limit=50", browser=False),
        Read("worklist page", "team", "/ui/worklist", browser=True),
        Read("patient page", "team", f"/ui/patients/{patient}", browser=True),
        Read("patient readings", "team", f"/api/v1/patients/{patient}/readings?limit=100", False),
        Read("at-risk list", "team", "/api/v1/adherence/at-risk?limit=100", browser=False),
        Read("at-risk page", "team", "/ui/adherence", browser=True),
        Read("huddle", "team", f"/api/v1/care-teams/{team}/huddle", browser=False),
        Read("huddle page", "team", f"/ui/huddle?team={team}", browser=True),
        Read("patient billing", "team", f"/api/v1/patients/{patient}/billing", browser=False),
        Read("time report", "team", f"/api/v1/reports/time?month={month}", browser=False),
        Read("time report page", "team", f"/ui/reports/time?month={month}", browser=True),
        Read("FHIR Observation search", "team", fhir, browser=False),
    ]
    program = [
        Read("worklist", "program", "/api/v1/alerts?limit=50", browser=False),
        Read("worklist page", "program", "/ui/worklist", browser=True),
        Read("patient page", "program", f"/ui/patients/{patient}", browser=True),
        Read("at-risk list", "program", "/api/v1/adherence/at-risk?limit=100", browser=False),
        Read("at-risk page", "program", "/ui/adherence", browser=True),
        Read("huddle", "program", f"/api/v1/care-teams/{team}/huddle", browser=False),
        Read("time report", "program", f"/api/v1/reports/time?month={month}", browser=False),
        Read("time report page", "program", f"/ui/reports/time?month={month}", browser=True),
        Read("FHIR Observation search", "program", fhir, browser=False),
        Read("FHIR Patient search", "program", "/fhir/Patient?_count=50", browser=False),
    ]
    return per_team + program


def _app(url: str, pool: AsyncConnectionPool) -> object:
    """The service's app with its routes, on our pool; its lifespan (consumer, scheduler,
    dispatcher, rule engine) is never entered."""
    settings = Settings(
        service=ServiceSettings(),
        database=DatabaseSettings(url=url),
        mqtt=MqttSettings(),
        ingest=IngestSettings(),
        rules=RulesSettings(),
        http=HttpSettings(),
    )
    app = create_app(Wiring(settings, url, BrokerAddress("127.0.0.1", 1), False, on_fatal=print))
    app.state.pool = pool
    app.state.settings = settings
    app.state.health = Health()
    app.state.identities = None  # no broker: rpm leaves device accounts alone
    app.state.plans = PlanCache()
    # As `rpm up` does once started: the collector's thresholds set the pauses a request
    # may meet.
    tune_garbage_collector()
    return app


async def _client(app: object, username: str, browser: bool) -> httpx2.AsyncClient:
    """A client signed in as the user: with a bearer token, or a browser's session cookie."""
    client = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="https://bench",
        timeout=600,
    )
    if browser:
        reply = await client.post("/ui/login", data={"username": username, "password": PASSWORD})
        assert reply.status_code == 303, reply.text
    else:
        reply = await client.post(
            "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
    return client


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: with fewer than 100 runs, p99 is the slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Timing:
    read: Read
    times_ms: list[float]
    rows: str

    @property
    def target_ms(self) -> float:
        return TEAM_TARGET_MS if self.read.who == "team" else PROGRAM_TARGET_MS

    @property
    def p99(self) -> float:
        return percentile(self.times_ms, 0.99)

    @property
    def passed(self) -> bool:
        return self.p99 <= self.target_ms


def _size(body: bytes, content_type: str) -> str:
    if "json" not in content_type:
        return f"{len(body) / 1024:.0f} KiB"
    found = json.loads(body)
    if isinstance(found, list):
        return f"{len(found)} rows"
    for key in ("alerts", "patients", "readings", "periods", "entry"):
        if isinstance(found.get(key), list):
            return f"{len(found[key])} {key}"
    return f"{len(body) / 1024:.0f} KiB"


async def measure(
    url: str, runs: int, program_runs: int, only: str | None, view: str | None, patients: int
) -> list[Timing]:
    now = datetime.now(UTC)
    # Team 1's patient with the most going on: two devices, an open alert, notes.
    patient = next(g for g in (498, 48, 1) if g <= patients)
    # Last month: a whole month of logged time.
    month = f"{now.replace(day=1) - timedelta(days=1):%Y-%m}"
    chosen = [
        r
        for r in reads(patient, 1, month)
        if (only is None or r.name == only) and (view is None or r.who == view)
    ]
    if not chosen:
        names = sorted({r.name for r in reads(patient, 1, month)})
        raise SystemExit(f"--only: no read named {only!r}; choose from {', '.join(names)}")
    found = []
    async with AsyncConnectionPool(url, min_size=2, max_size=4, open=False) as pool:
        await pool.open()
        app = _app(url, pool)
        clients = {
            (who, browser): await _client(app, user, browser)
            for who, user in (("team", "bench-cm"), ("program", "bench-admin"))
            for browser in (False, True)
        }
        for read in chosen:
            client = clients[(read.who, read.browser)]
            times = []
            reply = None
            for i in range(1 + (runs if read.who == "team" else program_runs)):
                started = time.perf_counter()
                reply = await client.get(read.path)
                elapsed = (time.perf_counter() - started) * 1000
                if reply.status_code != 200:
                    raise SystemExit(f"{read.path}: {reply.status_code} {reply.text[:500]}")
                if i:  # the first warms the caches
                    times.append(elapsed)
            assert reply is not None
            timing = Timing(read, times, _size(reply.content, reply.headers["content-type"]))
            found.append(timing)
            print(_line(timing), flush=True)
        for client in clients.values():
            await client.aclose()
    return found


HEADER = (
    f"{'read':<26} {'view':<8} {'runs':>4} {'p50 ms':>9} {'p99 ms':>9} {'target':>8}  {'':4}  size"
)


def _line(t: Timing) -> str:
    return (
        f"{t.read.name:<26} {t.read.who:<8} {len(t.times_ms):>4}"
        f" {statistics.median(t.times_ms):>9.1f} {t.p99:>9.1f} {t.target_ms:>8.0f}"
        f"  {'PASS' if t.passed else 'FAIL'}  {t.rows}"
    )


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def run(url: str, args: argparse.Namespace, seed: bool) -> bool:
    if seed:
        asyncio.run(prepare_schema(url, DatabaseSettings()))
        print(f"seeding {args.patients:,} patients ({_load()}):")
        started = time.perf_counter()
        Seeder(url, args.patients, datetime.now(UTC)).run()
        add_users(url)
        print(f"seeding took {time.perf_counter() - started:.0f} s")
    with psycopg.connect(url) as conn:
        (patients,) = conn.execute("SELECT count(*) FROM patient").fetchone() or (0,)
    print(f"\nmeasuring ({_load()}); team: team 1's care manager, program: an admin")
    print(HEADER)
    timings = asyncio.run(
        measure(url, args.runs, args.program_runs, args.only, args.view, int(patients))
    )
    print(f"after: {_load()}")
    ok = all(t.passed for t in timings)
    print(f"overall: {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30, help="timed runs of a team's read")
    parser.add_argument(
        "--program-runs", type=int, default=7, help="timed runs of a programme-wide read"
    )
    parser.add_argument("--only", help="time only the read of this name (both views)")
    parser.add_argument("--view", choices=("team", "program"), help="time only this view's reads")
    parser.add_argument("--seeded", metavar="URL", help="a database seeded by an earlier run")
    add_database_options(parser)
    args = parser.parse_args(argv)
    if args.seeded:
        return 0 if run(args.seeded, args, seed=False) else 1
    with throwaway_database(args.database_url, args.keep_database) as url:
        ok = run(url, args, seed=True)
        if args.keep_database:
            print(f"reuse it: --seeded {url}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
