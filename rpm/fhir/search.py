"""FHIR search over Observations: the `patient` and `date` parameters, the page cursor,
and the searchset Bundle. Pure.

A `date` value names a range, as FHIR has it: `2026`, `2026-11`, `2026-11-24` a year, a
month, a day; `2026-11-24T07:30-05:00` a minute; with seconds, a second. A prefix
compares an Observation's instant with that range: `eq` (the default) within it, `ne`
outside it, `gt` after it, `ge` from its start, `lt` before it, `le` up to its end.
FHIR leaves the time zone of a date without a time to the server: here it is the
patient's own, the day boundaries adherence and billing use too. A time must name its
zone (`Z` or an offset), since a bare 07:30 names no instant.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from rpm.devices.model import ReadingKind
from rpm.fhir.observations import Position

# PostgreSQL's bigint: an id beyond it names no patient.
_MAX_ID = 2**63 - 1
# FHIR's dateTime takes offsets up to 14 hours either side of UTC.
_MAX_OFFSET = timedelta(hours=14)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class SearchError(ValueError):
    """A search parameter that cannot be taken: the message says which and why (400)."""


class Prefix(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"


@dataclass(frozen=True)
class DateCondition:
    """One `date` parameter: its prefix and the range [start, end) its value names.
    Naive bounds (a date, month or year) are on the patient's clock."""

    prefix: Prefix
    start: datetime
    end: datetime


# Instants from `start` (inclusive) to `end` (exclusive); None: unbounded on that side.
Interval = tuple[datetime | None, datetime | None]

_YEAR = re.compile(r"\d{4}")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?P<seconds>:\d{2}(?P<fraction>\.\d{1,6})?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?"
)
_FORMS = "YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm[:ss[.ffffff]] with Z or an offset"


def patient_reference(value: str) -> int:
    """The patient's id from `123` or `Patient/123`."""
    number = value.removeprefix("Patient/")
    if not number.isascii() or not number.isdigit() or not 0 < int(number) <= _MAX_ID:
        raise SearchError(f"patient {value!r} is not a patient's id: give 123 or Patient/123")
    return int(number)


def date_condition(value: str) -> DateCondition:
    """One `date` parameter: an optional prefix, then a date or dateTime."""
    prefix_text, written = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    try:
        prefix = Prefix(prefix_text)
    except ValueError:
        supported = ", ".join(p.value for p in Prefix)
        raise SearchError(
            f"date {value!r}: the prefix {prefix_text!r} is not supported (use {supported})"
        ) from None
    try:
        start, end = _range(written)
    except ValueError as exc:
        raise SearchError(f"date {value!r}: {exc}") from None
    return DateCondition(prefix, start, end)


def _range(written: str) -> tuple[datetime, datetime]:
    if _YEAR.fullmatch(written):
        start = datetime(int(written), 1, 1)
        return start, _or_latest(lambda: start.replace(year=start.year + 1))
    if month := _MONTH.fullmatch(written):
        start = datetime(int(month[1]), int(month[2]), 1)
        return start, _or_latest(lambda: (start + timedelta(days=31)).replace(day=1))
    if _DAY.fullmatch(written):
        start = datetime.fromisoformat(written)
        return start, _or_latest(lambda: start + timedelta(days=1))
    if (moment := _DATE_TIME.fullmatch(written)) is None:
        raise ValueError(f"not a FHIR date or dateTime ({_FORMS})")
    if moment["zone"] is None:
        raise ValueError("a time needs its time zone: add Z or an offset such as -05:00")
    start = datetime.fromisoformat(written)
    offset = start.utcoffset()
    if offset is None or abs(offset) > _MAX_OFFSET:
        raise ValueError("a UTC offset runs from -14:00 to +14:00")
    if moment["seconds"] is None:
        precision = timedelta(minutes=1)
    elif moment["fraction"] is None:
        precision = timedelta(seconds=1)
    else:
        digits = len(moment["fraction"]) - 1
        precision = timedelta(microseconds=10 ** (6 - digits))
    return start, _or_latest(lambda: start + precision)


def _or_latest(end: Callable[[], datetime]) -> datetime:
    """The end of a range, or the last instant there is for one that ends past the year
    9999 (where a datetime's arithmetic overflows)."""
    try:
        return end()
    except (OverflowError, ValueError):
        return _LATEST


def window(conditions: Iterable[DateCondition], zone: tzinfo) -> list[Interval]:
    """The instants every condition admits, as disjoint intervals in UTC: [(None, None)]
    without any condition, [] when together they admit none. A naive bound is in `zone`."""
    admitted: list[Interval] = [(None, None)]
    for condition in conditions:
        start, end = _utc(condition.start, zone), _utc(condition.end, zone)
        allowed: list[Interval]
        match condition.prefix:
            case Prefix.EQ:
                allowed = [(start, end)]
            case Prefix.NE:
                allowed = [(None, start), (end, None)]
            case Prefix.GT:
                allowed = [(end, None)]
            case Prefix.GE:
                allowed = [(start, None)]
            case Prefix.LT:
                allowed = [(None, start)]
            case Prefix.LE:
                allowed = [(None, end)]
        admitted = [both for a in admitted for b in allowed if (both := _overlap(a, b)) is not None]
    return admitted


def _utc(bound: datetime, zone: tzinfo) -> datetime:
    """In UTC; a bound beyond what a datetime holds there is the first or last instant."""
    try:
        return (bound if bound.tzinfo else bound.replace(tzinfo=zone)).astimezone(UTC)
    except OverflowError:
        return _EARLIEST if bound.year == 1 else _LATEST


def _overlap(a: Interval, b: Interval) -> Interval | None:
    starts = [s for s in (a[0], b[0]) if s is not None]
    ends = [e for e in (a[1], b[1]) if e is not None]
    start, end = max(starts, default=None), min(ends, default=None)
    if start is not None and end is not None and start >= end:
        return None
    return start, end


def encode_cursor(position: Position) -> str:
    """The opaque `_cursor` of the page that follows the Observation at `position`."""
    key = "|".join(
        str(part)
        for part in (
            position.patient_id,
            position.measured_at.isoformat(),
            position.device_id,
            position.kind,
            position.part,
        )
    )
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_cursor(token: str, patient_id: int) -> Position:
    """Where the previous page of this patient's search ended."""
    try:
        patient, measured_at, device, kind, part = (
            base64.urlsafe_b64decode(token).decode().split("|")
        )
        position = Position(
            int(patient), datetime.fromisoformat(measured_at), int(device),
            ReadingKind(kind).value, int(part),
        )  # fmt: skip
    except (ValueError, binascii.Error, UnicodeDecodeError):
        position = None
    if position is None or position.patient_id != patient_id or position.measured_at.tzinfo is None:
        raise SearchError(
            "_cursor is not a page of this search: follow the Bundle's `next` link as it is"
        )
    return position


def tokens(values: Iterable[str], system: str | None) -> set[str]:
    """The codes that comma-separated tokens (`code`, `system|code`, `|code`) ask for,
    of `system` (None: codes of no system); those of another system match nothing."""
    codes = set()
    for value in values:
        for token in value.split(","):
            named, bar, code = token.rpartition("|")
            if not code:
                raise SearchError(f"{value!r}: a token needs its code (system|code or code)")
            if not bar or named == (system or ""):
                codes.add(code)
    return codes


def ids(values: Iterable[str]) -> set[str]:
    """The ids `_id` asks for (comma-separated, repeatable: any of them)."""
    return {token for value in values for token in value.split(",") if token}


def row_ids(values: Iterable[str]) -> set[int]:
    """The `_id`s of a resource whose ids are row numbers; others match nothing."""
    return {int(i) for i in ids(values) if i.isascii() and i.isdigit() and 0 < int(i) <= _MAX_ID}


def row_cursor(token: str) -> int:
    """Where the previous page of a search by id ended (the last id sent)."""
    if not (token.isascii() and token.isdigit() and int(token) <= _MAX_ID):
        raise SearchError(
            "_cursor is not a page of this search: follow the Bundle's `next` link as it is"
        )
    return int(token)


def search_url(base: str, resource_type: str, query: Sequence[tuple[str, str | int]]) -> str:
    """The address of a search (a Bundle's `self` or `next` link), as it was understood."""
    return f"{base}/{resource_type}?{urlencode(query, safe=':|,')}"


def searchset(
    base: str,
    resources: Sequence[dict[str, Any]],
    self_url: str,
    next_url: str | None,
    included: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A page of search results: a searchset Bundle with its `self` and `next` links, the
    matches then what `_include` brought."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    entries = [(resource, "match") for resource in resources]
    entries += [(resource, "include") for resource in included]
    if entries:  # FHIR's JSON has no empty arrays
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": mode},
            }
            for resource, mode in entries
        ]
    return bundle
