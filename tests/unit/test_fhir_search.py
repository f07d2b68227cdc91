"""FHIR search over Observations: `patient`, `date` (prefixes, partial dates, zones), the
page cursor and the searchset Bundle."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm.fhir.observations import Position
from rpm.fhir.search import (
    DateCondition,
    Interval,
    Prefix,
    SearchError,
    date_condition,
    decode_cursor,
    encode_cursor,
    patient_reference,
    row_cursor,
    row_ids,
    search_url,
    searchset,
    tokens,
    window,
)
from tests.fhir_checks import check_searchset

CHICAGO = ZoneInfo("America/Chicago")
LATEST = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(("value", "patient_id"), [("123", 123), ("Patient/123", 123)])
def test_a_patient_is_an_id_or_a_reference(value: str, patient_id: int) -> None:
    assert patient_reference(value) == patient_id


@pytest.mark.parametrize(
    "value", ["", "abc", "Patient/", "Practitioner/1", "0", "-1", "1.5", "9" * 20, "١٢٣"]
)
def test_anything_else_is_no_patient(value: str) -> None:
    with pytest.raises(SearchError, match="123 or Patient/123"):
        patient_reference(value)


@pytest.mark.parametrize(
    ("value", "prefix", "start", "end"),
    [
        ("2026", Prefix.EQ, datetime(2026, 1, 1), datetime(2027, 1, 1)),
        ("2026-11", Prefix.EQ, datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("ge2026-12", Prefix.GE, datetime(2026, 12, 1), datetime(2027, 1, 1)),
        ("2028-02", Prefix.EQ, datetime(2028, 2, 1), datetime(2028, 3, 1)),
        ("lt2026-11-24", Prefix.LT, datetime(2026, 11, 24), datetime(2026, 11, 25)),
        ("2026-12-31", Prefix.EQ, datetime(2026, 12, 31), datetime(2027, 1, 1)),
        (
            "gt2026-11-24T07:30-05:00",
            Prefix.GT,
            datetime(2026, 11, 24, 7, 30, tzinfo=timezone(timedelta(hours=-5))),
            datetime(2026, 11, 24, 7, 31, tzinfo=timezone(timedelta(hours=-5))),
        ),
        (
            "le2026-11-24T12:30:15Z",
            Prefix.LE,
            datetime(2026, 11, 24, 12, 30, 15, tzinfo=UTC),
            datetime(2026, 11, 24, 12, 30, 16, tzinfo=UTC),
        ),
        (
            "ne2026-11-24T12:30:15.25+14:00",
            Prefix.NE,
            datetime(2026, 11, 24, 12, 30, 15, 250000, tzinfo=timezone(timedelta(hours=14))),
            datetime(2026, 11, 24, 12, 30, 15, 260000, tzinfo=timezone(timedelta(hours=14))),
        ),
        ("9999", Prefix.EQ, datetime(9999, 1, 1), LATEST),
        ("9999-12-31", Prefix.EQ, datetime(9999, 12, 31), LATEST),
    ],
)
def test_a_date_names_the_range_of_its_precision(
    value: str, prefix: Prefix, start: datetime, end: datetime
) -> None:
    assert date_condition(value) == DateCondition(prefix, start, end)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ap2026", "the prefix 'ap' is not supported (use eq, ne, gt, ge, lt, le)"),
        ("sa2026-11-24", "the prefix 'sa' is not supported"),
        ("2026-11-24T07:30", "a time needs its time zone: add Z or an offset"),
        ("2026-11-24T07:30:00", "a time needs its time zone"),
        ("2026-11-24T07:30:00+15:00", "a UTC offset runs from -14:00 to +14:00"),
        ("2026-11-24T07:30:00+25:00", "2026-11-24T07:30:00+25:00"),
        ("2026-02-30", "day is out of range for month"),
        ("2026-13", "month must be in 1..12"),
        ("0000", "year 0 is out of range"),
        ("26-11-24", "not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or"),
        ("2026-11-24 07:30Z", "not a FHIR date or dateTime"),
        ("2026-11-24T07:30:00.1234567Z", "not a FHIR date or dateTime"),
        ("", "not a FHIR date or dateTime"),
        ("eq", "not a FHIR date or dateTime"),
    ],
)
def test_a_date_that_names_no_range_is_refused_saying_why(value: str, says: str) -> None:
    with pytest.raises(SearchError) as refused:
        date_condition(value)
    assert f"date {value!r}: " in str(refused.value)
    assert says in str(refused.value)


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_a_date_without_a_time_is_a_day_on_the_patients_clock() -> None:
    # 24 November in Chicago (UTC-6 in winter) is 06:00 UTC to 06:00 UTC the next day.
    assert window([date_condition("2026-11-24")], CHICAGO) == [
        (_utc(2026, 11, 24, 6), _utc(2026, 11, 25, 6))
    ]
    # March 2026 spans the switch to daylight saving time (UTC-5 from 8 March).
    assert window([date_condition("2026-03")], CHICAGO) == [
        (_utc(2026, 3, 1, 6), _utc(2026, 4, 1, 5))
    ]
    # A time names its own zone: the patient's does not matter.
    assert window([date_condition("2026-11-24T07:30:00-05:00")], CHICAGO) == [
        (_utc(2026, 11, 24, 12, 30), _utc(2026, 11, 24, 12, 30, 1))
    ]


def test_each_prefix_admits_its_side_of_the_range() -> None:
    day = (_utc(2026, 11, 24), _utc(2026, 11, 25))
    expected: dict[str, list[Interval]] = {
        "eq": [day],
        "ne": [(None, day[0]), (day[1], None)],
        "gt": [(day[1], None)],
        "ge": [(day[0], None)],
        "lt": [(None, day[0])],
        "le": [(None, day[1])],
    }
    for prefix, intervals in expected.items():
        assert window([date_condition(f"{prefix}2026-11-24")], UTC) == intervals, prefix


def test_conditions_all_hold_together() -> None:
    november_but_the_24th = [
        date_condition("ge2026-11-01"),
        date_condition("lt2026-12"),
        date_condition("ne2026-11-24"),
    ]
    assert window(november_but_the_24th, UTC) == [
        (_utc(2026, 11, 1), _utc(2026, 11, 24)),
        (_utc(2026, 11, 25), _utc(2026, 12, 1)),
    ]
    assert window([date_condition("lt2026"), date_condition("gt2026")], UTC) == []
    assert window([], UTC) == [(None, None)]


def test_the_ends_of_time_are_bounds_not_errors() -> None:
    east = ZoneInfo("Asia/Tokyo")  # the year 1 starts there before a datetime can say in UTC
    assert window([date_condition("lt0001")], east) == [(None, datetime.min.replace(tzinfo=UTC))]
    assert window([date_condition("gt9999")], CHICAGO) == [(LATEST, None)]


def _admits(intervals: list[Interval], at: datetime) -> bool:
    return any((lo is None or lo <= at) and (hi is None or at < hi) for lo, hi in intervals)


_PREDICATES: dict[Prefix, Callable[[datetime, datetime, datetime], bool]] = {
    Prefix.EQ: lambda at, lo, hi: lo <= at < hi,
    Prefix.NE: lambda at, lo, hi: not lo <= at < hi,
    Prefix.GT: lambda at, lo, hi: at >= hi,
    Prefix.GE: lambda at, lo, hi: at >= lo,
    Prefix.LT: lambda at, lo, hi: at < lo,
    Prefix.LE: lambda at, lo, hi: at < hi,
}
_INSTANTS = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC))


@st.composite
def date_values(draw: st.DrawFn) -> str:
    at = draw(st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)))
    written = draw(
        st.sampled_from(
            [
                f"{at:%Y}",
                f"{at:%Y-%m}",
                f"{at:%Y-%m-%d}",
                f"{at:%Y-%m-%dT%H:%M}Z",
                f"{at:%Y-%m-%dT%H:%M:%S}-05:00",
                f"{at:%Y-%m-%dT%H:%M:%S.%f}+05:45",
            ]
        )
    )
    return draw(st.sampled_from([p.value for p in Prefix])) + written


@given(st.lists(date_values(), max_size=3), st.lists(_INSTANTS, min_size=1, max_size=5))
def test_a_window_admits_what_every_condition_does(
    values: list[str], instants: list[datetime]
) -> None:
    """FHIR's definitions, each condition on its own, against the window of them all."""
    conditions = [date_condition(v) for v in values]
    intervals = window(conditions, CHICAGO)
    for lo, hi in intervals:
        assert lo is None or hi is None or lo < hi
    for (_, hi), (next_lo, _) in itertools.pairwise(intervals):  # disjoint, in order
        assert hi is not None
        assert next_lo is not None
        assert hi < next_lo
    for at in instants:
        expected = all(
            _PREDICATES[c.prefix](
                at,
                c.start if c.start.tzinfo else c.start.replace(tzinfo=CHICAGO),
                c.end if c.end.tzinfo else c.end.replace(tzinfo=CHICAGO),
            )
            for c in conditions
        )
        assert _admits(intervals, at) == expected


def test_a_cursor_comes_back_as_the_position_it_was_made_of() -> None:
    position = Position(
        7, datetime(2026, 11, 24, 12, 30, 0, 250, tzinfo=UTC), 3, "blood_pressure", 1
    )
    token = encode_cursor(position)
    assert token.isascii()
    assert decode_cursor(token, 7) == position


@pytest.mark.parametrize(
    "token",
    [
        "not-a-cursor",
        "%%%",
        encode_cursor(Position(8, datetime(2026, 1, 1, tzinfo=UTC), 3, "heart_rate", 0)),
        encode_cursor(Position(7, datetime(2026, 1, 1, tzinfo=UTC), 3, "temperature", 0)),
        encode_cursor(Position(7, datetime(2026, 1, 1), 3, "heart_rate", 0)),
    ],
)
def test_a_cursor_of_another_search_or_of_nothing_is_refused(token: str) -> None:
    """Another patient's search's, or made up."""
    with pytest.raises(SearchError, match="follow the Bundle's `next` link"):
        decode_cursor(token, 7)


def test_a_searchset_bundle_with_its_links() -> None:
    base = "https://rpm.example/fhir"
    dates = [("date", "ge2026-11-01T00:00:00+01:00"), ("date", "lt2026-12")]
    self_url = search_url(base, "Observation", [("patient", 7), *dates, ("_count", 2)])
    assert self_url == (
        "https://rpm.example/fhir/Observation?patient=7&date=ge2026-11-01T00:00:00%2B01:00"
        "&date=lt2026-12&_count=2"
    )
    next_url = search_url(base, "Observation", [("patient", 7), ("_count", 2), ("_cursor", "abc=")])
    assert next_url == "https://rpm.example/fhir/Observation?patient=7&_count=2&_cursor=abc%3D"
    empty = searchset(base, [], self_url, None)
    assert "entry" not in empty  # FHIR's JSON has no empty arrays
    assert check_searchset(empty) == []
    assert empty["link"] == [{"relation": "self", "url": self_url}]
    paged = searchset(base, [], self_url, next_url)
    check_searchset(paged)
    assert paged["link"][1] == {"relation": "next", "url": next_url}


def test_tokens_of_a_system_and_of_none() -> None:
    """`code`, `system|code` and `|code` (no system), comma-separated: any of them; a
    token of another system matches nothing; one without its code is refused."""
    loinc = "http://loinc.org"
    assert tokens(["8867-4,http://loinc.org|29463-7", "|41653-7"], loinc) == {
        "8867-4", "29463-7"
    }  # fmt: skip
    assert tokens(["http://snomed.info/sct|364075005"], loinc) == set()
    assert tokens(["MRN-1", "|MRN-2", "urn:other|MRN-3"], None) == {"MRN-1", "MRN-2"}
    with pytest.raises(SearchError, match="needs its code"):
        tokens(["http://loinc.org|"], loinc)


def test_row_ids_and_their_cursor() -> None:
    """Ids of rows: what is no row's id matches nothing; a cursor that is not one is
    refused."""
    assert row_ids(["1,2", "3", "x,0,-4,99999999999999999999"]) == {1, 2, 3}
    assert row_cursor("41") == 41
    for token in ("", "x", "-1", "99999999999999999999"):
        with pytest.raises(SearchError, match="`next` link"):
            row_cursor(token)


def test_an_included_resource_follows_the_matches() -> None:
    base = "https://rpm.example/fhir"
    patient = {"resourceType": "Patient", "id": "7"}
    bundle = searchset(base, [], "self", None, [patient])
    assert bundle["entry"] == [
        {"fullUrl": f"{base}/Patient/7", "resource": patient, "search": {"mode": "include"}}
    ]
