"""The alert lifecycle as a pure state machine: open -> acknowledged -> resolved.

`apply` takes an alert's state and a command and returns the new state with the event
that records it, or raises `InvalidTransition` saying why not (the API answers 409 with
that sentence). The adapter (`rpm.alerts.repository`) loads the state under a row lock,
applies, and writes the state and the event in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

NOTE_MAX_LENGTH = 2000


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Outcome(StrEnum):
    PATIENT_CONTACTED = "patient_contacted"
    MEDICATION_ADJUSTED = "medication_adjusted"
    REFERRED_TO_EMERGENCY_CARE = "referred_to_emergency_care"
    MEASUREMENT_OR_DEVICE_ERROR = "measurement_or_device_error"
    NO_ACTION_NEEDED = "no_action_needed"


class InvalidTransition(Exception):
    """A command the alert's state does not allow; the message says why."""


@dataclass(frozen=True)
class AlertState:
    id: int
    status: Status
    assigned_to: int | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    outcome: Outcome | None = None
    resolution_note: str | None = None
    escalation_tier: int = 0


@dataclass(frozen=True)
class Actor:
    """Who acts: a username and, when they are staff, their id (acknowledging assigns
    the alert to them if nobody has it)."""

    name: str
    staff_id: int | None = None


@dataclass(frozen=True)
class Acknowledge:
    note: str = ""


@dataclass(frozen=True)
class Assign:
    staff_id: int
    note: str = ""


@dataclass(frozen=True)
class Resolve:
    outcome: Outcome
    note: str


@dataclass(frozen=True)
class Escalate:
    """The service telling the next tier: an open alert nobody acknowledged in time."""

    tier: int
    reason: str


Command = Acknowledge | Assign | Resolve | Escalate


@dataclass(frozen=True)
class Event:
    action: str
    from_status: Status
    to_status: Status
    reason: str
    details: dict[str, Any]


def apply(
    state: AlertState, command: Command, actor: Actor, at: datetime
) -> tuple[AlertState, Event]:
    """The state after the command, and the event to log; or `InvalidTransition`."""
    if state.status is Status.RESOLVED:
        raise InvalidTransition(
            f"alert {state.id} is already resolved"
            f" ({state.outcome.value if state.outcome else 'no outcome'},"
            f" by {state.resolved_by or 'unknown'}): a new finding opens a new alert"
        )
    match command:
        case Acknowledge(note=note):
            if state.status is Status.ACKNOWLEDGED:
                raise InvalidTransition(
                    f"alert {state.id} is already acknowledged by {state.acknowledged_by}"
                )
            new = replace(
                state,
                status=Status.ACKNOWLEDGED,
                acknowledged_by=actor.name,
                acknowledged_at=at,
                assigned_to=state.assigned_to if state.assigned_to else actor.staff_id,
            )
            return new, _event("acknowledged", state, new, _note(note), {})
        case Assign(staff_id=staff_id, note=note):
            if staff_id == state.assigned_to:
                raise InvalidTransition(f"alert {state.id} is already assigned to that member")
            new = replace(state, assigned_to=staff_id)
            details = {"from_staff_id": state.assigned_to, "to_staff_id": staff_id}
            return new, _event("assigned", state, new, _note(note), details)
        case Resolve(outcome=outcome, note=note):
            if not note.strip():
                raise InvalidTransition(
                    f"resolving alert {state.id} needs a note saying what was done"
                )
            new = replace(
                state,
                status=Status.RESOLVED,
                resolved_by=actor.name,
                resolved_at=at,
                outcome=outcome,
                resolution_note=_note(note),
            )
            return new, _event("resolved", state, new, _note(note), {"outcome": outcome.value})
        case Escalate(tier=tier, reason=reason):
            if state.status is not Status.OPEN:
                raise InvalidTransition(
                    f"alert {state.id} is {state.status.value}: only an open alert escalates"
                )
            if tier < state.escalation_tier:
                raise InvalidTransition(
                    f"alert {state.id} has already reached tier {state.escalation_tier}"
                )
            # The same tier again is a reminder: nobody higher to tell.
            action = "reminded" if tier == state.escalation_tier else "escalated"
            new = replace(state, escalation_tier=tier)
            details = {"from_tier": state.escalation_tier, "to_tier": tier}
            return new, _event(action, state, new, reason, details)


def _note(note: str) -> str:
    note = note.strip()
    if len(note) > NOTE_MAX_LENGTH:
        raise InvalidTransition(f"a note is at most {NOTE_MAX_LENGTH} characters")
    return note


def _event(
    action: str, old: AlertState, new: AlertState, reason: str, details: dict[str, Any]
) -> Event:
    return Event(action, old.status, new.status, reason, details)
