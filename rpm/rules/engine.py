"""The rule engine's adapter: readings in from ingest, alerts out to the store.

Per committed ingest batch: one query for the affected patients' plans, one for their
recent history, one for their latest alerts; then the pure evaluation; then one upsert
of the alerts, in the transaction that also takes the batch off the durable queue.
A finding whose rule asks for confirmation may instead be held while the patient is
asked to re-measure (`rpm.rules.confirmation`), in the same transaction.
The missed-readings check, the check of held findings and the sweeper of orphaned
batches run on the scheduler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from prometheus_client import Counter, Histogram
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from rpm.alerts import notifications
from rpm.alerts import repository as alerts
from rpm.alerts.notifier import Notifier
from rpm.alerts.repository import AlertChange
from rpm.config import CONFIRM_REQUEST_TEMPLATE
from rpm.devices import registry as devices
from rpm.rules import care_plans, repository
from rpm.rules.confirmation import Outcome, Point, Settlement, settle, unanswered
from rpm.rules.evaluate import (
    Context,
    Finding,
    History,
    Trace,
    applies_to,
    dry_run,
    findings,
    lookback_hours,
    may_fire,
    missed,
    trace,
    waits,
)
from rpm.rules.plan import READING_KINDS, BaselineRule, CarePlan, ReadingRule
from rpm.rules.policy import Action, AlertWrite, LatestAlert, alert_writes, decide
from rpm.rules.repository import HeldFinding, MissedCandidate, NewReading, QueueEntry, Window

logger = logging.getLogger(__name__)

Connection = AsyncConnection[TupleRow]

EVALUATION_SECONDS = Histogram(
    "rpm_rules_evaluation_seconds",
    "Evaluating one ingest batch: load, evaluate, write alerts, commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
READINGS_EVALUATED = Counter("rpm_rules_readings_evaluated", "Readings evaluated against plans")
ALERTS_WRITTEN = Counter("rpm_rules_alerts", "Alerts written, by what the write did", ["change"])
FINDINGS_SUPPRESSED = Counter(
    "rpm_rules_findings_suppressed",
    "Firings in an episode whose alert a nurse has already resolved",
)
CONFIRMATIONS = Counter(
    "rpm_rules_confirmations",
    "Findings held for a repeat reading (held), and how they ended",
    ["outcome"],
)
MISSED_CHECK_SECONDS = Histogram(
    "rpm_rules_missed_check_seconds", "One run of the missed-readings check over all patients"
)

# Any 64-bit number unique to this job among the advisory locks the service takes.
MISSED_CHECK_LOCK = 0x72706D_6D69737365  # "rpm" "misse"
DRY_RUN_DAYS = 30
# How far back a resolved alert still tells whether a firing continues its episode.
EPISODE_MEMORY = timedelta(days=30)
# Whose plans `warm` parses at start-up: patients whose devices sent something this recently.
WARM_ACTIVE_WITHIN = timedelta(days=2)
WARM_CHUNK = 1_000
# Overdue held findings raised per transaction of the confirmation check.
CONFIRM_CHECK_BATCH = 500


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PatientPlan:
    patient_id: int
    version: int
    plan: CarePlan
    time_zone: ZoneInfo

    def context(self) -> Context:
        return Context(self.version, self.time_zone)


@dataclass(frozen=True)
class DryRunResult:
    since: datetime
    until: datetime
    readings: int
    alerts: list[Finding]


class RuleEngine:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        clock: Callable[[], datetime] = _utc_now,
        notifier: Notifier | None = None,
        request_text: str = CONFIRM_REQUEST_TEMPLATE,
        plans: care_plans.PlanCache | None = None,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._notifier = notifier
        self._request_text = request_text
        self.plans = plans if plans is not None else care_plans.PlanCache()

    async def warm(self) -> int:
        """Parse the plans of recently active patients before consuming starts.

        Otherwise the first reading of each pays the parse after a restart, and the parsed
        plans, made all at once and long-lived, are what the next collections of the
        garbage collector scan: a pause of half a second at 10,000 patients. Parsed here,
        before `rpm up` freezes the start-up heap (`tune_garbage_collector`), they are
        never scanned. Returns how many plans it parsed.
        """
        started = time.perf_counter()
        since = self._clock() - WARM_ACTIVE_WITHIN
        async with self._pool.connection() as conn:
            active = await devices.patients_seen_since(conn, since, care_plans.PLAN_CACHE_SIZE)
            for start in range(0, len(active), WARM_CHUNK):
                await self._plans_of(conn, active[start : start + WARM_CHUNK])
        logger.info("rule engine warmed: %d plan(s) parsed in %.1f s",
                    len(self.plans), time.perf_counter() - started)  # fmt: skip
        return len(self.plans)

    async def enqueue(self, conn: Connection, entry: QueueEntry) -> int:
        """In the ingest transaction: the readings will be evaluated, whatever happens."""
        return await repository.enqueue(conn, entry)

    async def evaluate(
        self, ticket: int, readings: Mapping[int, Sequence[NewReading]]
    ) -> list[AlertChange]:
        """Evaluate a committed batch and take it off the queue, in one transaction.

        `readings` are the batch's, by patient. Only the patients with a plan in force are
        looked up in it: a mapping that builds their readings when asked (the hand-off's)
        spares the others' the cost.
        """
        started = time.perf_counter()
        async with self._pool.connection() as conn, conn.transaction():
            if not await repository.claim(conn, ticket):
                return []
            changes, asked = await self._evaluate(conn, readings)
        self._committed(changes, asked)
        EVALUATION_SECONDS.observe(time.perf_counter() - started)
        return changes

    async def sweep(self, older_than_s: float, batches: int = 20) -> int:
        """Evaluate batches whose process died between ingest and evaluation."""
        async with self._pool.connection() as conn, conn.transaction():
            readings = await repository.claim_stale(conn, older_than_s, batches)
            by_patient: dict[int, list[NewReading]] = {}
            for reading in readings:
                by_patient.setdefault(reading.patient_id, []).append(reading)
            changes, asked = await self._evaluate(conn, by_patient) if readings else ([], 0)
        self._committed(changes, asked)
        if readings:
            logger.warning("evaluated %d reading(s) left unevaluated by a stopped process",
                           len(readings))  # fmt: skip
        return len(readings)

    async def check_missed(self) -> list[AlertChange]:
        """Run every patient's missed-reading rules. One process at a time: the others
        skip the run (and alerts are idempotent besides)."""
        started = time.perf_counter()
        now = self._clock()
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [MISSED_CHECK_LOCK])
            locked = await cursor.fetchone()
            if not (locked and locked[0]):
                return []
            due: dict[tuple[int, str], list[MissedCandidate]] = {}
            for candidate in await repository.missed_candidates(conn, now):
                due.setdefault((candidate.patient_id, candidate.rule.id), []).append(candidate)
            latest = await alerts.latest_alerts(conn, {pid for pid, _ in due})
            writes: list[AlertWrite] = []
            for (patient_id, _), candidates in due.items():
                first = candidates[0]
                context = Context(first.plan_version, ZoneInfo(first.time_zone))
                last = {c.kind: c.last for c in candidates}
                finding = missed(first.rule, last, first.enrolled_at, now, context)
                if finding is not None:
                    found, suppressed = alert_writes(
                        patient_id, first.plan_version, [finding], latest.get(patient_id, {})
                    )
                    FINDINGS_SUPPRESSED.inc(suppressed)
                    writes += found
            changes = await alerts.write(conn, writes)
            # Missed-reading alerts follow the service's SMS routing (no plan is parsed).
            await self._notify(conn, changes, {}, now)
        self._committed(changes)
        _count(changes)
        MISSED_CHECK_SECONDS.observe(time.perf_counter() - started)
        return changes

    async def check_confirmations(self) -> list[AlertChange]:
        """Raise the alerts of held findings whose window passed without a repeat reading.
        Several processes share the work (SKIP LOCKED)."""
        now = self._clock()
        async with self._pool.connection() as conn, conn.transaction():
            overdue = await repository.overdue_findings(conn, now, CONFIRM_CHECK_BATCH)
            if not overdue:
                return []
            patient_ids = {h.patient_id for h in overdue}
            latest = await alerts.latest_alerts(conn, patient_ids)
            writes: list[AlertWrite] = []
            for held in overdue:
                found = [unanswered(held.finding, held.within_minutes)]
                written, suppressed = alert_writes(
                    held.patient_id, held.plan_version, found, latest.get(held.patient_id, {})
                )
                FINDINGS_SUPPRESSED.inc(suppressed)
                writes += written
            changes = await alerts.write(conn, writes)
            plans = await self._plans_of(conn, patient_ids)
            sms = {pid: patient.plan.notify.sms for pid, patient in plans.items()}
            await self._notify(conn, changes, sms, now)
            opened = {(c.patient_id, c.rule_id): c.alert_id for c in changes}
            for held in overdue:
                alert_id = opened.get((held.patient_id, held.finding.rule_id))
                await repository.settle_held(conn, held.id, Outcome.NO_REPEAT, now, alert_id)
                CONFIRMATIONS.labels(Outcome.NO_REPEAT.value).inc()
        self._committed(changes)
        _count(changes)
        return changes

    async def dry_run(
        self, conn: Connection, patient_id: int, time_zone: ZoneInfo, plan: CarePlan, version: int
    ) -> DryRunResult:
        """What `plan` would have raised on the patient's last 30 days of readings."""
        until = self._clock()
        since = until - timedelta(days=DRY_RUN_DAYS)
        lookback = max((lookback_hours(r) for r in plan.reading_rules()), default=24.0)
        since_with_lookback = since - timedelta(hours=lookback)
        rows = await repository.history(conn, [Window(patient_id, since_with_lookback, until)])
        history = History.of(rows[patient_id])
        raised = dry_run(plan, history, Context(version, time_zone), since, until)
        in_period = int((history.times >= since.timestamp()).sum())
        return DryRunResult(since, until, in_period, raised)

    async def _evaluate(
        self, conn: Connection, new: Mapping[int, Sequence[NewReading]]
    ) -> tuple[list[AlertChange], int]:
        """The alert changes, and how many patients were asked to re-measure."""
        plans = await self._plans_of(conn, new)
        if not plans:
            return [], 0
        now = self._clock()
        latest = await alerts.latest_alerts(conn, plans)
        confirming = [
            pid for pid, p in plans.items() if any(map(_confirms, p.plan.reading_rules()))
        ]
        held: dict[tuple[int, str], HeldFinding] = {}
        phones: dict[int, str] = {}
        if confirming:
            for one in await repository.held_findings(conn, confirming):
                held[one.patient_id, one.finding.rule_id] = one
            phones = await repository.reminder_phones(conn, confirming)
        to_check: dict[int, list[ReadingRule]] = {}
        windows = []
        for patient_id, patient in plans.items():
            mine = new[patient_id]
            READINGS_EVALUATED.inc(len(mine))
            waiting_rules = {rule_id for pid, rule_id in held if pid == patient_id}
            rules = _rules_to_check(patient.plan, mine, waiting_rules)
            if not rules:
                continue
            to_check[patient_id] = rules
            times = [r.key.measured_at for r in mine]
            since = min(times) - timedelta(hours=max(lookback_hours(r) for r in rules))
            # Back to the last firing of an alert a nurse resolved (within reason), so that
            # an episode still running since then is seen as the same episode.
            resolved = [
                a.last_triggered_at for a in latest.get(patient_id, {}).values() if a.resolved
            ]
            if resolved:
                since = min(since, max(min(resolved), min(times) - EPISODE_MEMORY))
            kinds = {k for rule in rules for m in rule.measures for k in READING_KINDS[m]}
            windows.append(Window(patient_id, since, max(times), frozenset(kinds)))
        histories = await repository.history(conn, windows)
        writes: list[AlertWrite] = []
        settled: list[tuple[HeldFinding, Outcome]] = []
        asked = 0
        for patient_id, rules in to_check.items():
            patient = plans[patient_id]
            history = History.of(histories[patient_id])
            index = history.index()
            rows = [index[r.key] for r in new[patient_id] if r.key in index]
            found: list[Finding] = []
            for rule in rules:
                traced = trace(rule, history)
                fired = findings(traced, history, patient.context(), rows)
                waiting = held.get((patient_id, rule.id))
                if waiting is None and not _confirms(rule):
                    found += fired
                    continue
                mine_latest = latest.get(patient_id, {}).get(rule.id)
                may_hold = patient_id in phones
                result = _confirmation(traced, history, rows, fired, waiting, mine_latest, may_hold)
                found += result.write
                if waiting is not None and result.settled is not None:
                    settled.append((waiting, result.settled))
                if result.hold is not None:
                    if await self._ask(conn, patient, rule, result.hold, phones[patient_id], now):
                        asked += 1
                    else:
                        found.append(result.hold)
            writes += self._writes(patient, found, latest)
        changes = await alerts.write(conn, writes)
        sms = {pid: patient.plan.notify.sms for pid, patient in plans.items()}
        await self._notify(conn, changes, sms, now)
        opened = {(c.patient_id, c.rule_id): c.alert_id for c in changes}
        for waiting, outcome in settled:
            key = (waiting.patient_id, waiting.finding.rule_id)
            alert_id = opened.get(key) if outcome is Outcome.CONFIRMED else None
            await repository.settle_held(conn, waiting.id, outcome, now, alert_id)
            CONFIRMATIONS.labels(outcome.value).inc()
        _count(changes)
        return changes, asked

    async def _ask(
        self,
        conn: Connection,
        patient: PatientPlan,
        rule: ReadingRule,
        finding: Finding,
        phone: str,
        now: datetime,
    ) -> bool:
        """Hold the finding and ask the patient to re-measure; False if the rule holds one
        already (another evaluation's, at the same moment): the caller raises it."""
        assert not isinstance(rule, BaselineRule)
        assert rule.confirm_within_minutes is not None
        assert finding.key is not None
        minutes = rule.confirm_within_minutes
        held_id = await repository.hold(
            conn, patient.patient_id, patient.version, finding, minutes, now
        )
        if held_id is None:
            return False
        text = self._request_text.format(what=finding.key.kind.replace("_", " "), minutes=minutes)
        notification_id = await notifications.insert_confirmation_request(
            conn, patient.patient_id, phone, text, now, now + timedelta(minutes=minutes)
        )
        await repository.requested(conn, held_id, notification_id)
        CONFIRMATIONS.labels("held").inc()
        logger.info("finding held for a repeat reading: rule %s", rule.id,
                    extra={"patient_id": patient.patient_id})  # fmt: skip
        return True

    async def _notify(
        self,
        conn: Connection,
        changes: Sequence[AlertChange],
        plan_sms: Mapping[int, Sequence[str] | None],
        now: datetime,
    ) -> None:
        """The alerts' SMS, into the outbox in the transaction that changed them."""
        if self._notifier is not None and changes:
            await self._notifier.on_changes(conn, changes, plan_sms, now)

    def _committed(self, changes: Sequence[AlertChange], asked: int = 0) -> None:
        if self._notifier is not None and (changes or asked):
            self._notifier.committed()

    def _writes(
        self,
        patient: PatientPlan,
        found: Iterable[Finding],
        latest: dict[int, dict[str, LatestAlert]],
    ) -> list[AlertWrite]:
        mine = latest.get(patient.patient_id, {})
        writes, suppressed = alert_writes(patient.patient_id, patient.version, found, mine)
        FINDINGS_SUPPRESSED.inc(suppressed)
        return writes

    async def _plans_of(
        self, conn: Connection, patient_ids: Iterable[int]
    ) -> dict[int, PatientPlan]:
        """The plan in force for each active patient that has one, parsed once per version."""
        in_force = await care_plans.in_force(conn, patient_ids)
        parsed = await self.plans.plans(conn, [(pid, version) for pid, _, version in in_force])
        return {
            pid: PatientPlan(pid, version, parsed[pid, version], ZoneInfo(zone))
            for pid, zone, version in in_force
        }


def _rules_to_check(
    plan: CarePlan, readings: Sequence[NewReading], waiting: set[str]
) -> list[ReadingRule]:
    """The plan's rules that these new readings could make fire: of their kinds, and not
    a threshold that none of them breaches (the sweeper's readings come without values:
    all of their kinds' rules are checked). A rule holding a finding is checked all the
    same: a repeat in range settles it."""
    kinds = {r.key.kind for r in readings}
    values = [r.values for r in readings if r.values is not None]
    known = len(values) == len(readings)
    return [
        rule
        for rule in plan.reading_rules()
        if applies_to(rule, kinds) and (not known or rule.id in waiting or may_fire(rule, values))
    ]


def _confirms(rule: ReadingRule) -> bool:
    return not isinstance(rule, BaselineRule) and rule.confirm_within_minutes is not None


def _confirmation(
    traced: Trace,
    history: History,
    rows: Sequence[int],
    fired: Sequence[Finding],
    waiting: HeldFinding | None,
    latest: LatestAlert | None,
    may_hold: bool,
) -> Settlement:
    """A confirming rule's (or held finding's) new readings through `confirmation.settle`.
    A new reading measured before the held one is no repeat of it: its firing goes on."""
    after = -np.inf if waiting is None else waiting.finding.at.timestamp()
    new_rows = set(rows)
    by_key = {f.key: f for f in fired}
    points, waits_at = [], {}
    for point in np.flatnonzero(traced.times > after):
        key = history.keys[int(traced.rows[point])]
        if int(traced.rows[point]) in new_rows:
            points.append(Point(key.measured_at, by_key.get(key)))
            if key in by_key:
                waits_at[key] = _confirms(traced.rule) and waits(traced, history, int(point))

    def can_hold(finding: Finding) -> bool:
        waits_here = finding.key is not None and waits_at[finding.key]
        return may_hold and waits_here and decide(finding, latest) is Action.OPEN

    result = settle(points, None if waiting is None else waiting.finding, can_hold)
    result.write = [f for f in fired if f.at.timestamp() <= after] + result.write
    return result


def _count(changes: Sequence[AlertChange]) -> None:
    for change in changes:
        what = "opened" if change.opened else "raised" if change.severity_raised else "updated"
        ALERTS_WRITTEN.labels(what).inc()
    for change in changes:
        if change.opened or change.severity_raised:
            logger.info(
                "alert %s: rule %s, %s",
                "opened" if change.opened else "severity raised",
                change.rule_id,
                change.severity,
                extra={"alert_id": change.alert_id, "patient_id": change.patient_id},
            )
