"""The alert lifecycle: every transition, and every refusal with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rpm.alerts.lifecycle import (
    Acknowledge,
    Actor,
    AlertState,
    Assign,
    Escalate,
    InvalidTransition,
    Outcome,
    Resolve,
    Status,
    apply,
)

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
NURSE = Actor("nurse-1", staff_id=7)
OPEN = AlertState(id=12, status=Status.OPEN)


def test_acknowledging_takes_the_alert_and_assigns_it_to_the_nurse_if_nobody_has_it() -> None:
    state, event = apply(OPEN, Acknowledge("calling the patient"), NURSE, AT)
    assert (state.status, state.acknowledged_by, state.acknowledged_at) == (
        Status.ACKNOWLEDGED,
        "nurse-1",
        AT,
    )
    assert state.assigned_to == 7
    assert (event.action, event.from_status, event.to_status, event.reason) == (
        "acknowledged",
        Status.OPEN,
        Status.ACKNOWLEDGED,
        "calling the patient",
    )


def test_acknowledging_keeps_an_existing_assignee() -> None:
    state, _ = apply(AlertState(12, Status.OPEN, assigned_to=3), Acknowledge(), NURSE, AT)
    assert state.assigned_to == 3


def test_an_acknowledged_alert_cannot_be_acknowledged_again() -> None:
    taken, _ = apply(OPEN, Acknowledge(), NURSE, AT)
    with pytest.raises(InvalidTransition, match="alert 12 is already acknowledged by nurse-1"):
        apply(taken, Acknowledge(), Actor("nurse-2"), AT)


def test_assigning_keeps_the_status_and_records_who_had_it() -> None:
    for start in (OPEN, apply(OPEN, Acknowledge(), Actor("nurse-2"), AT)[0]):
        state, event = apply(start, Assign(9, "your patient"), NURSE, AT)
        assert state.assigned_to == 9
        assert state.status is start.status
        assert event.action == "assigned"
        assert event.details == {"from_staff_id": start.assigned_to, "to_staff_id": 9}


def test_assigning_to_the_current_assignee_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="already assigned to that member"):
        apply(AlertState(12, Status.OPEN, assigned_to=9), Assign(9), NURSE, AT)


@pytest.mark.parametrize("start", [Status.OPEN, Status.ACKNOWLEDGED])
def test_resolving_records_the_outcome_and_the_note(start: Status) -> None:
    state, event = apply(
        AlertState(12, start),
        Resolve(Outcome.PATIENT_CONTACTED, "  re-measured: 142/88 "),
        NURSE,
        AT,
    )
    assert (state.status, state.outcome, state.resolution_note, state.resolved_by) == (
        Status.RESOLVED,
        Outcome.PATIENT_CONTACTED,
        "re-measured: 142/88",
        "nurse-1",
    )
    assert state.resolved_at == AT
    assert (event.action, event.from_status, event.details) == (
        "resolved",
        start,
        {"outcome": "patient_contacted"},
    )


def test_resolving_needs_a_note() -> None:
    with pytest.raises(InvalidTransition, match="needs a note saying what was done"):
        apply(OPEN, Resolve(Outcome.NO_ACTION_NEEDED, "   "), NURSE, AT)


def test_a_note_has_a_length_limit() -> None:
    with pytest.raises(InvalidTransition, match="at most 2000 characters"):
        apply(OPEN, Acknowledge("x" * 2001), NURSE, AT)


@pytest.mark.parametrize(
    "command",
    [
        Acknowledge(),
        Assign(3),
        Resolve(Outcome.NO_ACTION_NEEDED, "again"),
        Escalate(2, "no acknowledgement"),
    ],
)
def test_a_resolved_alert_refuses_everything(
    command: Acknowledge | Assign | Resolve | Escalate,
) -> None:
    resolved, _ = apply(
        OPEN, Resolve(Outcome.MEASUREMENT_OR_DEVICE_ERROR, "cuff too loose"), NURSE, AT
    )
    with pytest.raises(InvalidTransition, match=r"already resolved \(measurement_or_device_error"):
        apply(resolved, command, NURSE, AT)


def test_escalation_raises_the_tier_of_an_open_alert_and_repeats_as_a_reminder() -> None:
    state, event = apply(OPEN, Escalate(1, "critical: tell the on-call nurse"), Actor("system"), AT)
    assert state.escalation_tier == 1
    assert event.action == "escalated"
    state, event = apply(state, Escalate(2, "not acknowledged in 15 min"), Actor("system"), AT)
    assert (state.escalation_tier, event.details) == (2, {"from_tier": 1, "to_tier": 2})
    state, event = apply(state, Escalate(2, "still not acknowledged"), Actor("system"), AT)
    assert state.escalation_tier == 2
    assert event.action == "reminded"
    with pytest.raises(InvalidTransition, match="already reached tier 2"):
        apply(state, Escalate(1, "late"), Actor("system"), AT)


def test_an_acknowledged_alert_does_not_escalate() -> None:
    taken, _ = apply(OPEN, Acknowledge(), NURSE, AT)
    with pytest.raises(InvalidTransition, match="is acknowledged: only an open alert escalates"):
        apply(taken, Escalate(2, "deadline"), Actor("system"), AT)
