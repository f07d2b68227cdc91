"""The simulators' generation: deterministic, physiologically sane, and understood by rpm.

rpm's own pipeline decodes every generated message here, so a simulator that drifts from
the device contract fails a unit test rather than a demo.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rpm.devices.checks import TimeLimits
from rpm.devices.model import DeviceStatus, Reading, ReadingKind, Reason, Rejection
from rpm.ingest.pipeline import DecodedMessage, Envelope, Transport, decode
from simulators.devices import TENOVI_TOPIC, Behaviour
from simulators.scenario import PRESETS, Scenario, ScenarioError, Simulation, generate, load
from simulators.transport import Pace, wall_schedule

START = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
PRESET_NAMES = sorted(p.stem for p in PRESETS.glob("*.toml"))


def _small(name: str) -> Scenario:
    """The preset, with big cohorts cut down so the test stays quick."""
    scenario = load(name)
    return replace(
        scenario, cohorts=tuple(replace(c, count=min(c.count, 20)) for c in scenario.cohorts)
    )


def _decoded(simulation: Simulation) -> list[tuple[str, DecodedMessage]]:
    decoded = []
    for message in simulation.messages:
        topic = f"{TENOVI_TOPIC}/sim" if message.topic == TENOVI_TOPIC else message.topic
        envelope = Envelope(Transport.MQTT, topic, message.payload, message.send_at)
        decoded.append((message.note, decode(envelope, TimeLimits())))
    return decoded


def test_the_presets_the_issue_names_exist() -> None:
    assert set(PRESET_NAMES) >= {
        "demo", "chf-decompensation", "hypertensive-crisis", "hypoglycemia-night",
        "nonadherent", "load",
    }  # fmt: skip


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_same_seed_gives_the_same_messages(name: str) -> None:
    scenario = _small(name)
    first, second = generate(scenario, START), generate(scenario, START)
    assert first.messages == second.messages
    assert generate(replace(scenario, seed=scenario.seed + 1), START).messages != first.messages


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_message_is_one_rpm_reads(name: str) -> None:
    simulation = generate(_small(name), START)
    expected_readings = 0
    for note, message in _decoded(simulation):
        outcomes = [item.outcome for item in message.items]
        rejections = [o for o in outcomes if isinstance(o, Rejection)]
        assert rejections == [], (note, rejections)
        if note == "status":
            assert all(isinstance(o, DeviceStatus) for o in outcomes)
        else:
            expected_readings += len(outcomes)
    assert expected_readings == sum(m.readings for m in simulation.messages if m.note != "status")
    assert simulation.readings > 0


# Adult home readings, resting: narrower than rpm's plausibility limits (rpm.devices.checks),
# which only weed out device errors; a simulated patient must look like a patient.
HUMAN = {
    "systolic_mmhg": (70, 260),
    "diastolic_mmhg": (40, 160),
    "pulse_bpm": (40, 150),
    "weight_kg": (40, 200),
    "glucose_mg_dl": (30, 400),
}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_physiology_stays_in_human_ranges(name: str) -> None:
    outside = []
    for _, message in _decoded(generate(_small(name), START)):
        for item in message.items:
            if isinstance(item.outcome, Reading):
                for field, (low, high) in HUMAN.items():
                    value = getattr(item.outcome, field)
                    if value is not None and not low <= value <= high:
                        outside.append((item.serial, field, value))
    assert outside == []


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_physiology_crosses_guideline_limits_only_in_episodes(name: str) -> None:
    scenario = _small(name)
    simulation = generate(scenario, START)
    labelled = {e.patient for e in scenario.expected}
    crossings: dict[str, list[float]] = {}
    for _, message in _decoded(simulation):
        for item in message.items:
            reading = item.outcome
            if not isinstance(reading, Reading) or item.serial is None:
                continue
            patient = item.serial.rsplit("-", 1)[0]
            day = (reading.measured_at - START).total_seconds() / 86400
            crisis = reading.kind == ReadingKind.BLOOD_PRESSURE and (
                (reading.systolic_mmhg or 0) >= 180 or (reading.diastolic_mmhg or 0) >= 120
            )
            low = reading.kind == ReadingKind.BLOOD_GLUCOSE and (reading.glucose_mg_dl or 99) < 54
            if crisis or low:
                crossings.setdefault(patient, []).append(day)
    assert set(crossings) <= labelled
    for expectation in scenario.expected:
        if expectation.rule in {"bp_crisis", "glucose_low"}:
            days = crossings[expectation.patient]
            assert all(expectation.from_day <= d <= expectation.to_day for d in days), days


def test_device_misbehaviour_is_what_rpm_rejects() -> None:
    scenario = load("hypertensive-crisis")
    cohort = replace(
        scenario.cohorts[0],
        count=2,
        behaviour=Behaviour(malformed=0.2, duplicate=0.2, clock_skew_s=900),
    )
    simulation = generate(replace(scenario, cohorts=(cohort,), days=3), START)
    reasons = {}
    for note, message in _decoded(simulation):
        for item in message.items:
            if isinstance(item.outcome, Rejection):
                reasons.setdefault(note, set()).add(item.outcome.reason)
    assert reasons["malformed"] == {Reason.MALFORMED_JSON}
    # A clock 15 minutes fast puts readings that are sent at once in the future.
    assert Reason.FUTURE_TIMESTAMP in reasons["reading"]
    assert any(m.note == "duplicate" for m in simulation.messages)


def test_offline_devices_upload_their_backlog_as_one_array() -> None:
    scenario = _small("chf-decompensation")
    cohort = replace(
        scenario.cohorts[0], behaviour=Behaviour(offline_per_day=0.3, offline_hours=(30, 60))
    )
    simulation = generate(replace(scenario, cohorts=(cohort,)), START)
    backlogs = [m for m in simulation.messages if m.note == "backlog"]
    assert backlogs
    assert all(m.payload.startswith(b"[") and m.readings > 1 for m in backlogs)


def test_batteries_run_down_to_low_and_report_it() -> None:
    scenario = load("hypertensive-crisis")
    cohort = replace(
        scenario.cohorts[0], count=1, behaviour=Behaviour(battery_start=12, battery_per_day=3)
    )
    simulation = generate(replace(scenario, cohorts=(cohort,), days=6), START)
    levels = [
        item.outcome.battery_percent
        for note, message in _decoded(simulation)
        if note == "status"
        for item in message.items
        if isinstance(item.outcome, DeviceStatus)
    ]
    # One status a day, down 3 points a day from 12 %, never below empty.
    assert levels == [12, 9, 6, 3, 0, 0]


def test_time_control_schedules_each_pace() -> None:
    messages = generate(_small("hypertensive-crisis"), START).messages
    span = (messages[-1].send_at - messages[0].send_at).total_seconds()
    # Real time: each message as long after the first as it was simulated to be.
    realtime = wall_schedule(messages, Pace.REALTIME, 60, 1000)
    assert realtime[-1] == pytest.approx(span)
    # Accelerated: the whole history in the duration, its order and proportions kept.
    accelerated = wall_schedule(messages, Pace.ACCELERATED, 60, 1000)
    assert (accelerated[0], accelerated[-1]) == (0, pytest.approx(60))
    assert accelerated == sorted(accelerated)
    assert accelerated == pytest.approx([t * 60 / span for t in realtime])
    # Load: evenly at the rate, whatever the simulated times.
    assert wall_schedule(messages[:5], Pace.LOAD, 60, 1000) == [0, 0.001, 0.002, 0.003, 0.004]
    assert wall_schedule([], Pace.ACCELERATED, 60, 1000) == []


def test_patients_who_stop_stop() -> None:
    scenario = load("nonadherent")
    simulation = generate(scenario, START)
    stopped = [m for m in simulation.messages if m.serial.startswith("NA-005")]
    assert stopped
    assert max(m.send_at for m in stopped) < START + timedelta(days=5, hours=12)


def test_a_bad_scenario_file_is_refused_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "x"\ndays = 3\n[[cohort]]\nprefix = "A"\ncount = 1\ndevices = ["toaster"]\n'
    )
    with pytest.raises(ScenarioError, match=r"bad\.toml: 'toaster' is not a valid DeviceKind"):
        load(str(path))
    path.write_text('name = "x"\n')
    with pytest.raises(ScenarioError, match="missing field 'days'"):
        load(str(path))
    with pytest.raises(ScenarioError, match="one of chf-decompensation, demo"):
        load("no-such-scenario")
