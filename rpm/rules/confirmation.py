"""Confirmation before alerting: a single out-of-range reading that may wait (not
critical, no level 2 hypoglycaemia: `evaluate.may_wait`) is held while the patient is
asked by SMS to re-measure. The repeat decides: it fires too, and the alert is raised
with both readings; it does not, and there is no alert. No repeat within the rule's
window, and the alert is raised all the same (the scheduled check). Pure.

Held findings are kept in the store (`alert_confirmation`) so that a restart loses none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from rpm.rules.evaluate import Finding


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"
    NO_REPEAT = "no_repeat"


@dataclass(frozen=True)
class Point:
    """One of the rule's new readings, in time order, and its firing (None: clear)."""

    at: datetime
    finding: Finding | None


@dataclass
class Settlement:
    """What a batch of new readings does to one patient's rule."""

    # Findings that go on to become (or update) alerts.
    write: list[Finding] = field(default_factory=list)
    # A finding to hold while the patient is asked to re-measure.
    hold: Finding | None = None
    # What became of the finding the store was holding, if it was settled.
    settled: Outcome | None = None


def settle(
    points: Sequence[Point], held: Finding | None, can_hold: Callable[[Finding], bool]
) -> Settlement:
    """Walk the rule's new readings after the held finding (if any): the first repeat
    settles it; a firing that may wait is held; any other firing goes through, and once
    one has (the alert is open), the rest do too."""
    result = Settlement()
    waiting, stored = held, held is not None
    for point in points:
        if waiting is not None:
            if point.finding is not None:
                result.write += [waiting, confirmed(point.finding)]
            if stored:
                result.settled = Outcome.CONFIRMED if point.finding else Outcome.NOT_CONFIRMED
                stored = False
            waiting = None
        elif point.finding is not None:
            if result.write or not can_hold(point.finding):
                result.write.append(point.finding)
            else:
                waiting = point.finding
    if waiting is not None and not stored:
        result.hold = waiting
    return result


def confirmed(finding: Finding) -> Finding:
    return replace(finding, message=f"{finding.message} Confirmed by a repeat reading.")


def unanswered(finding: Finding, minutes: int) -> Finding:
    """A held finding whose window passed without a repeat: the alert, saying so."""
    return replace(
        finding,
        starts_episode=True,
        message=(
            f"{finding.message} No repeat reading came within {minutes} min of asking the"
            " patient to re-measure."
        ),
    )
