"""How the UI words values: ages, labels, times on the reader's clock, readings (Jinja2
filters), and a message's raw bytes. Pure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from rpm.rules.plan import rounded


def age(since: datetime, now: datetime) -> str:
    """How long ago, to the minute and in at most two units: "just now", "12 min",
    "3 h 5 min", "2 d 4 h"."""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes == 0:
        return "just now"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def ago(since: datetime, now: datetime) -> str:
    """How long ago, as a phrase: "just now", "12 min ago" (`age`)."""
    said = age(since, now)
    return said if said == "just now" else f"{said} ago"


def label(value: str) -> str:
    """A code as words: "care_manager" -> "care manager"."""
    return value.replace("_", " ")


def sentence(message: str) -> str:
    """One of the core's messages ("alert 5 is already resolved ...") as a sentence:
    capitalised, with a full stop. Only the first letter changes: names keep theirs."""
    message = message.strip()
    if not message:
        return message
    end = "" if message[-1] in ".!?" else "."
    return message[0].upper() + message[1:] + end


def day(on: date) -> str:
    """A calendar day (on someone's clock, said beside it): "Sat 5 Dec 2026"."""
    return f"{on:%a} {on.day} {on:%b} {on.year}"


def month(value: object) -> str:
    """A calendar month as a clinician reads it: "2026-12" (or a `Month`) as "December 2026"."""
    year, number = str(value).split("-")
    return f"{date(int(year), int(number), 1):%B %Y}"


def zone(name: str) -> ZoneInfo:
    """The IANA zone of that name; ValueError, in words, for anything else."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time zone {name!r} is not an IANA time zone name (e.g. America/Chicago)"
        ) from None


# The zones a user picks from: the tz database's place names (Area/Location) and UTC,
# without its legacy aliases ("US/Central", "EST5EDT") that name no place.
_AREAS = frozenset(
    {"Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian"}
    | {"Pacific"}
)
ZONES = ("UTC", *sorted(n for n in available_timezones() if n.partition("/")[0] in _AREAS))

# An instant written into a core message (RFC 3339: "2026-12-05T21:23:00+00:00").
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class Clock:
    """The reader's clock: every instant a page shows, in the signed-in user's time zone
    and labelled with its abbreviation, as a clinician reads a date: "Sat 5 Dec 2026,
    15:23 CST" (weekday, day, month, year; 24-hour time). The one place the UI turns an
    instant into words; `rpm.web.deps` makes one per request from its principal."""

    zone: ZoneInfo

    @classmethod
    def of(cls, chosen: str | None, default: str) -> Clock:
        """The user's zone (their own, or their staff record's), else the service's."""
        return cls(zone(chosen or default))

    @property
    def name(self) -> str:
        """The zone's IANA name ("America/Chicago"), for captions: abbreviations repeat
        across the world (CST is also China's)."""
        return self.zone.key

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.zone)

    def timestamp(self, at: datetime) -> str:
        """ "Sat 5 Dec 2026, 15:23 CST"."""
        return _stamp(self.local(at))

    def iso(self, at: datetime) -> str:
        """For a `<time datetime>`: the same instant with the reader's offset."""
        return self.local(at).isoformat(timespec="seconds")

    def beside_patient(self, at: datetime, patient_zone: str) -> str:
        """On the reader's clock, with the patient's beside it when theirs reads
        otherwise: "Sat 5 Dec 2026, 15:23 CST (patient 16:23 EST)", the patient's day
        named too when it is another ("(patient Sun 6 Dec, 00:23 EST)")."""
        mine = self.local(at)
        theirs = at.astimezone(zone(patient_zone))
        said = _stamp(mine)
        if (theirs.utcoffset(), theirs.tzname()) == (mine.utcoffset(), mine.tzname()):
            return said
        day = "" if theirs.date() == mine.date() else f"{theirs:%a} {theirs.day} {theirs:%b}, "
        # Kept on one line (no-break spaces): on a phone, "(patient" alone at a line's end
        # reads as if it were all there is.
        beside = f"(patient {day}{theirs:%H:%M} {theirs.tzname()})".replace(
            " ", "\N{NO-BREAK SPACE}"
        )
        return f"{said} {beside}"

    def time_of_day(self, at: datetime) -> str:
        """The wall-clock time alone ("08:00"), where the day is said beside it."""
        return f"{self.local(at):%H:%M}"

    def day_mark(self, at: datetime) -> str:
        """A day on a chart's time axis: "5 Dec"."""
        local = self.local(at)
        return f"{local.day} {local:%b}"

    def field(self, at: datetime | None) -> str:
        """For an `<input type="datetime-local">`: the reader's wall-clock time."""
        return "" if at is None else self.local(at).strftime("%Y-%m-%dT%H:%M")

    def entered(self, value: str) -> datetime:
        """A time from a form: without an offset (a datetime-local field), on the reader's
        clock; ValueError when it is no time."""
        at = datetime.fromisoformat(value.strip())
        return at if at.tzinfo else at.replace(tzinfo=self.zone)

    def words(self, text: str) -> str:
        """A core message with each instant written into it ("... at
        2026-12-05T21:23:00+00:00; ...") put on the reader's clock."""
        return _INSTANT.sub(lambda m: self.timestamp(datetime.fromisoformat(m[0])), text)


def _stamp(local: datetime) -> str:
    return f"{day(local.date())}, {local:%H:%M} {local.tzname()}"


class Values(Protocol):
    """A reading's values in the store's canonical units (any of them may be absent)."""

    @property
    def systolic_mmhg(self) -> float | None: ...
    @property
    def diastolic_mmhg(self) -> float | None: ...
    @property
    def pulse_bpm(self) -> float | None: ...
    @property
    def weight_kg(self) -> float | None: ...
    @property
    def glucose_mg_dl(self) -> float | None: ...
    @property
    def meal_context(self) -> str | None: ...


def reading(values: Values) -> str:
    """A reading's values in words, each to its unit's decimals: "182/121 mmHg, pulse 88
    bpm", "81.4 kg", "54 mg/dL (fasting)"."""
    parts = []
    if values.systolic_mmhg is not None and values.diastolic_mmhg is not None:
        parts.append(
            f"{rounded(values.systolic_mmhg, 'mmHg')}/{rounded(values.diastolic_mmhg, 'mmHg')} mmHg"
        )
    if values.pulse_bpm is not None:
        parts.append(f"pulse {rounded(values.pulse_bpm, 'bpm')} bpm")
    if values.weight_kg is not None:
        parts.append(f"{rounded(values.weight_kg, 'kg')} kg")
    if values.glucose_mg_dl is not None:
        meal = f" ({label(values.meal_context)})" if values.meal_context else ""
        parts.append(f"{rounded(values.glucose_mg_dl, 'mg/dL')} mg/dL{meal}")
    return ", ".join(parts)


@dataclass(frozen=True)
class ShownPayload:
    """A message's raw bytes as a page shows them: as text, or as a hex dump with the
    reason why not as text; the first `shown_bytes` of `total_bytes`."""

    text: str
    hex_because: str | None
    shown_bytes: int
    total_bytes: int


# Shown in hex rather than as text: characters that would hide or reorder what the page
# shows (control characters; format characters such as bidirectional overrides and
# zero-width spaces). Tabs and line ends are text.
_HIDING = frozenset({"Cc", "Cf"})
_TEXT_CONTROLS = frozenset("\t\n\r")


def shown_payload(raw: bytes, limit: int) -> ShownPayload:
    """The first `limit` bytes: as text when the whole is UTF-8 with nothing hidden in it,
    else as a hex dump. The page escapes the text like any other (it is data, never
    markup)."""
    head = raw[:limit]
    try:
        whole = raw.decode()
    except UnicodeDecodeError:
        return ShownPayload(hex_dump(head), "they are not UTF-8 text", len(head), len(raw))
    if any(unicodedata.category(c) in _HIDING and c not in _TEXT_CONTROLS for c in whole):
        because = "they hold control or invisible formatting characters"
        return ShownPayload(hex_dump(head), because, len(head), len(raw))
    # A cut may fall inside a character: that character is left out.
    text = head.decode(errors="ignore")
    return ShownPayload(text, None, len(text.encode()), len(raw))


def hex_dump(data: bytes) -> str:
    """As `hexdump -C` shows bytes: the offset, 16 bytes in hex, and those that are
    printable ASCII beside them ("." for the others)."""
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        left, right = (" ".join(f"{b:02x}" for b in half) for half in (row[:8], row[8:]))
        shown = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{shown}|")
    return "\n".join(lines)
