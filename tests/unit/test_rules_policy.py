"""From findings to alert writes: open, update or suppress, one write per rule."""

from __future__ import annotations

from datetime import datetime

import pytest

from rpm.rules.evaluate import Finding, ReadingKey
from rpm.rules.plan import Severity
from rpm.rules.policy import Action, LatestAlert, alert_writes, decide
from tests.unit.rules_builders import at


def _finding(
    hours: float,
    severity: Severity = Severity.HIGH,
    starts: bool = False,
    since: float = 0,
    rule_id: str = "bp_crisis",
    reading: bool = True,
) -> Finding:
    key = ReadingKey(1, "blood_pressure", at(hours)) if reading else None
    return Finding(rule_id, severity, at(hours), key, starts, at(since), f"{rule_id} at {hours}")


def _alert(resolved: bool, last_triggered: datetime) -> LatestAlert:
    return LatestAlert(id=7, resolved=resolved, last_triggered_at=last_triggered)


@pytest.mark.parametrize(
    ("finding", "latest", "action"),
    [
        pytest.param(_finding(5), None, Action.OPEN, id="no-alert-yet"),
        pytest.param(_finding(5, starts=True), _alert(False, at(1)), Action.UPDATE, id="open"),
        # An acknowledged alert is not resolved: it is updated like an open one.
        pytest.param(_finding(5), _alert(False, at(1)), Action.UPDATE, id="acknowledged"),
        pytest.param(
            _finding(5, starts=True, since=5), _alert(True, at(1)), Action.OPEN, id="new-episode"
        ),
        pytest.param(
            _finding(5, since=0), _alert(True, at(1)), Action.SUPPRESS, id="resolved-episode"
        ),
        pytest.param(
            _finding(5, since=0), _alert(True, at(0)), Action.SUPPRESS, id="resolved-at-its-start"
        ),
        # The episode began after the resolved alert's last trigger: not the one resolved.
        pytest.param(_finding(5, since=3), _alert(True, at(1)), Action.OPEN, id="later-episode"),
    ],
)
def test_decide(finding: Finding, latest: LatestAlert | None, action: Action) -> None:
    assert decide(finding, latest) is action


def test_a_batch_folds_into_one_write_per_rule() -> None:
    batch = [
        _finding(3, Severity.CRITICAL),
        _finding(1, Severity.HIGH, starts=True),
        _finding(2, rule_id="glucose_low", starts=True),
        _finding(4, Severity.CRITICAL),
        _finding(5, Severity.HIGH),
    ]
    writes, suppressed = alert_writes(42, 3, batch, {})
    assert suppressed == 0
    assert [w.rule_id for w in writes] == ["bp_crisis", "glucose_low"]
    crisis = writes[0]
    assert (crisis.patient_id, crisis.plan_version) == (42, 3)
    assert crisis.severity is Severity.CRITICAL
    assert crisis.message == "bp_crisis at 4"  # the most severe; of those, the latest
    assert crisis.latest_message == "bp_crisis at 5"
    assert (crisis.first_triggered_at, crisis.last_triggered_at) == (at(1), at(5))
    assert [k.measured_at for k in crisis.triggers] == [at(1), at(3), at(4), at(5)]


def test_firings_of_a_resolved_episode_are_suppressed_until_a_new_one_starts() -> None:
    latest = {"bp_crisis": _alert(True, at(2))}
    batch = [_finding(3), _finding(4), _finding(6, starts=True, since=6), _finding(7, since=6)]
    writes, suppressed = alert_writes(42, 3, batch, latest)
    assert suppressed == 2
    [write] = writes
    assert [k.measured_at for k in write.triggers] == [at(6), at(7)]
    assert write.first_triggered_at == at(6)


def test_a_batch_entirely_of_a_resolved_episode_writes_nothing() -> None:
    writes, suppressed = alert_writes(
        42, 3, [_finding(3), _finding(4)], {"bp_crisis": _alert(True, at(2))}
    )
    assert (writes, suppressed) == ([], 2)


def test_a_missed_readings_finding_has_no_trigger_reading() -> None:
    finding = _finding(30, Severity.WARNING, rule_id="missed_readings", reading=False)
    [write] = alert_writes(42, 3, [finding], {})[0]
    assert write.triggers == ()
    assert write.last_triggered_at == at(30)
