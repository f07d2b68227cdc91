"""How the UI words values: ages, labels, timestamps. Pure: Jinja2 filters."""

from __future__ import annotations

from datetime import UTC, datetime


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
