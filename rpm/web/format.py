"""How the UI words values: ages, labels, timestamps, readings. Pure: Jinja2 filters."""

from __future__ import annotations

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
