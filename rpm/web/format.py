"""How the UI words values: ages, labels, timestamps, readings (Jinja2 filters), and a
message's raw bytes. Pure."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

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


def timestamp(at: datetime) -> str:
    """An instant as staff in any time zone read it alike: UTC, to the minute."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


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
