"""The care-plan SQL: versions, the version in force, and its missed-reading rules.

A plan is never edited in place: `save` writes a new version and moves the patient's
pointer to it, compare-and-set on the version the editor started from.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.json import Jsonb

from rpm.rules.plan import CarePlan

Connection = AsyncConnection[TupleRow]


class CarePlanError(Exception):
    """A plan that cannot be read or saved, with a message saying why."""


class PlanNotFound(CarePlanError):
    pass


class StalePlan(CarePlanError):
    pass


@dataclass(frozen=True)
class PlanVersion:
    patient_id: int
    version: int
    plan: CarePlan
    templates: list[str]
    author: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class VersionSummary:
    version: int
    templates: list[str]
    author: str
    reason: str
    created_at: datetime
    current: bool


_VERSION = """
SELECT v.patient_id, v.version, v.document, v.templates, v.author, v.reason, v.created_at
FROM care_plan_version v
"""


async def save(
    conn: Connection,
    patient_id: int,
    plan: CarePlan,
    author: str,
    reason: str,
    based_on: int | None,
    templates: Sequence[str] = (),
) -> PlanVersion:
    """Write the plan as the patient's next version; `based_on` is the version the
    editor started from (None for a patient without a plan). Own transaction (savepoint)."""
    async with conn.transaction():
        if based_on is None:
            cursor = await conn.execute(
                "INSERT INTO care_plan (patient_id, version) VALUES (%s, 1)"
                " ON CONFLICT (patient_id) DO NOTHING RETURNING version",
                [patient_id],
            )
        else:
            cursor = await conn.execute(
                "UPDATE care_plan SET version = version + 1, updated_at = now()"
                " WHERE patient_id = %s AND version = %s RETURNING version",
                [patient_id, based_on],
            )
        row = await cursor.fetchone()
        if row is None:
            current = await _current_version(conn, patient_id)
            raise StalePlan(
                f"patient {patient_id}'s care plan is at version {current}, not"
                f" {based_on if based_on is not None else 'none'}: reload it, reapply your"
                " change and save again"
            )
        version = int(row[0])
        await conn.execute(
            "INSERT INTO care_plan_version (patient_id, version, document, templates, author,"
            " reason) VALUES (%s, %s, %s, %s, %s, %s)",
            [patient_id, version, Jsonb(plan.model_dump(mode="json")), list(templates), author,
             reason],
        )  # fmt: skip
        await conn.execute("DELETE FROM missed_reading_rule WHERE patient_id = %s", [patient_id])
        missed = plan.missed_rules()
        if missed:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO missed_reading_rule (patient_id, rule_id, expects, days,"
                    " plan_version, severity, advice) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            patient_id,
                            r.id,
                            [k.value for k in r.expects],
                            r.days,
                            version,
                            r.severity.value,
                            r.advice,
                        )
                        for r in missed
                    ],
                )
    return await version_of(conn, patient_id, version)


async def current(conn: Connection, patient_id: int) -> PlanVersion:
    version = await _current_version(conn, patient_id)
    if version is None:
        raise PlanNotFound(f"patient {patient_id} has no care plan")
    return await version_of(conn, patient_id, version)


async def version_of(conn: Connection, patient_id: int, version: int) -> PlanVersion:
    cursor = await conn.execute(
        _VERSION + " WHERE v.patient_id = %s AND v.version = %s", [patient_id, version]
    )
    row = await cursor.fetchone()
    if row is None:
        raise PlanNotFound(f"patient {patient_id} has no care plan version {version}")
    return _plan_version(row)


async def versions(conn: Connection, patient_id: int) -> list[VersionSummary]:
    async with conn.cursor(row_factory=class_row(VersionSummary)) as cursor:
        await cursor.execute(
            "SELECT v.version, v.templates, v.author, v.reason, v.created_at,"
            " v.version = c.version AS current"
            " FROM care_plan_version v JOIN care_plan c USING (patient_id)"
            " WHERE v.patient_id = %s ORDER BY v.version DESC",
            [patient_id],
        )
        found = await cursor.fetchall()
    if not found:
        raise PlanNotFound(f"patient {patient_id} has no care plan")
    return found


async def in_force(conn: Connection, patient_ids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(patient id, time zone, version in force) of each active patient
    with a plan: the engine parses each version's document once, and caches it."""
    cursor = await conn.execute(
        "SELECT p.id, p.time_zone, c.version"
        " FROM patient p JOIN care_plan c ON c.patient_id = p.id"
        " WHERE p.id = ANY(%s) AND p.status = 'active'",
        [list(patient_ids)],
    )
    return await cursor.fetchall()


async def plans(
    conn: Connection, versions: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], CarePlan]:
    """The plans of these (patient id, version) pairs, each distinct document parsed once:
    most patients' plans are a template's, word for word, and validating a plan costs
    about 0.3 ms (a huddle board of 500 patients spent most of its time on it). The plans
    are frozen, so patients with the same document share one."""
    if not versions:
        return {}
    # Grouped on the document (jsonb equality), so each distinct one crosses the wire once:
    # a template's plan is some 10 kB, 500 of them 5 MB.
    cursor = await conn.execute(
        "SELECT v.document::text, array_agg(v.patient_id), array_agg(v.version)"
        " FROM care_plan_version v"
        " JOIN unnest(%s::bigint[], %s::integer[]) AS w(patient_id, version)"
        " ON v.patient_id = w.patient_id AND v.version = w.version GROUP BY v.document",
        [[p for p, _ in versions], [v for _, v in versions]],
    )
    found: dict[tuple[int, int], CarePlan] = {}
    for text, patient_ids, numbers in await cursor.fetchall():
        plan = CarePlan.model_validate(json.loads(text))
        found.update(dict.fromkeys(zip(patient_ids, numbers, strict=True), plan))
    return found


# Parsed plans kept in memory, keyed by (patient, version): a version never changes.
PLAN_CACHE_SIZE = 50_000


class PlanCache:
    """Parsed plans by (patient id, version), the least recently used dropped once there
    are more than `size`. A version is never changed (a change is a new version), so an
    entry never goes stale: the rule engine and the huddle board share one, and a board
    of 500 patients reads no plan document the engine has parsed (5 MB, 14 ms)."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        self._size = size
        self._plans: OrderedDict[tuple[int, int], CarePlan] = OrderedDict()

    def __len__(self) -> int:
        return len(self._plans)

    async def plans(
        self, conn: Connection, versions: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], CarePlan]:
        """As `plans`: those it holds, and the others read and kept. It keeps at least
        all of these, however many."""
        # Taken before the read: another call meanwhile may drop some of them.
        found = {key: self._plans[key] for key in versions if key in self._plans}
        for key in found:
            self._plans.move_to_end(key)
        missing = [key for key in versions if key not in found]
        read = await plans(conn, missing)
        for key in missing:  # in the order asked, so that the least recent go first
            if key in read:
                self._plans[key] = read[key]
        while len(self._plans) > max(self._size, len(versions)):
            self._plans.popitem(last=False)
        return {
            key: plan for key in versions if (plan := found.get(key, read.get(key))) is not None
        }


async def _current_version(conn: Connection, patient_id: int) -> int | None:
    cursor = await conn.execute("SELECT version FROM care_plan WHERE patient_id = %s", [patient_id])
    row = await cursor.fetchone()
    return None if row is None else int(row[0])


def _plan_version(row: tuple[Any, ...]) -> PlanVersion:
    patient_id, version, document, templates, author, reason, created_at = row
    return PlanVersion(
        patient_id, version, CarePlan.model_validate(document), templates, author, reason,
        created_at,
    )  # fmt: skip
