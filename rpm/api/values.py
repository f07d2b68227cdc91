"""Values a request carries that pydantic's own types let through but PostgreSQL or the
reply cannot take: refused here with a reason (422), not failed later (500)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def in_utc(value: datetime) -> datetime:
    """An aware moment in UTC, or ValueError (in words) if it falls outside the years 1
    to 9999 there: the check `Instant` makes, for values that come another way (a form)."""
    # PostgreSQL takes offsets up to 15:59 only, and what it stores must read back as a
    # Python datetime (years 1 to 9999 in UTC).
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time must fall within the years 1 to 9999 in UTC") from None


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local time of day, without an offset (the time zone says where)")
    return value


# A moment, with its offset (e.g. 2025-03-01T08:00:00-06:00); kept in UTC.
Instant = Annotated[AwareDatetime, AfterValidator(in_utc)]
# A time of day on the wall clock of the record's `time_zone`, e.g. 22:00.
LocalTime = Annotated[time, AfterValidator(_local)]
