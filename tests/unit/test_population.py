"""The population simulator: seeded, its distributions within the ranges
docs/benchmarks.md gives, and its labelled events where the readings show them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from simulators import population as pop
from simulators.physiology import Condition
from simulators.population import BP, DAY_S, GLUCOSE, WEIGHT, EventKind, Population, simulate


@pytest.fixture(scope="module")
def population() -> Population:
    return simulate(patients=400, days=60, seed=3)


def test_the_same_seed_makes_the_same_population() -> None:
    a, b = simulate(20, 30, seed=5), simulate(20, 30, seed=5)
    for x, y in zip(a.patients, b.patients, strict=True):
        assert x.conditions == y.conditions
        assert x.events == y.events
        np.testing.assert_array_equal(x.readings.times, y.readings.times)
        np.testing.assert_array_equal(x.readings.systolic, y.readings.systolic)
    other = simulate(20, 30, seed=6)
    assert [p.conditions for p in other.patients] != [p.conditions for p in a.patients]


def test_a_larger_population_keeps_its_first_patients() -> None:
    small, large = simulate(5, 30, seed=2), simulate(10, 30, seed=2)
    for x, y in zip(small.patients, large.patients[:5], strict=True):
        assert x.events == y.events
        np.testing.assert_array_equal(x.readings.glucose_mg_dl, y.readings.glucose_mg_dl)


def test_the_case_mix_and_profiles_follow_their_shares(population: Population) -> None:
    mix = Counter(p.conditions for p in population.patients)
    for conditions, share in pop.CASE_MIX:
        assert mix[conditions] / 400 == pytest.approx(share, abs=0.06)
    measuring_bp = [p for p in population.patients if p.bp_profile is not None]
    profiles = Counter(p.bp_profile for p in measuring_bp)
    for profile, (share, _, _) in pop.BP_PROFILES.items():
        assert profiles[profile] / len(measuring_bp) == pytest.approx(share, abs=0.07)
    diabetic = [p for p in population.patients if Condition.DIABETES in p.conditions]
    insulin = sum(p.insulin for p in diabetic) / len(diabetic)
    assert insulin == pytest.approx(pop.INSULIN_SHARE, abs=0.1)


def test_each_condition_has_its_devices(population: Population) -> None:
    for p in population.patients:
        kinds = set(p.readings.kinds.tolist())
        assert (GLUCOSE in kinds) <= (Condition.DIABETES in p.conditions)
        assert (WEIGHT in kinds) <= (Condition.HEART_FAILURE in p.conditions)
        assert (BP in kinds) <= bool(
            p.conditions & {Condition.HYPERTENSION, Condition.HEART_FAILURE}
        )


def test_values_are_ones_a_device_shows(population: Population) -> None:
    for p in population.patients:
        r = p.readings
        bp = r.kinds == BP
        assert np.all((r.systolic[bp] >= 70) & (r.systolic[bp] <= 260))
        assert np.all(r.diastolic[bp] < r.systolic[bp])
        assert np.all(np.isnan(r.systolic[~bp]))
        assert np.all(r.glucose_mg_dl[r.kinds == GLUCOSE] >= 40)
        assert np.all(np.diff(r.times) >= 0)
        assert np.all(r.arrivals >= r.times)
        assert np.all((r.times >= 0) & (r.times < 60 * DAY_S))


def test_day_by_day_bp_variability_is_ohasamas(population: Population) -> None:
    """Morning systolic SD per patient, on event-free readings: around 8.6 mmHg."""
    sds = []
    for p in population.patients:
        if p.bp_profile is None or any(e.kind != EventKind.DROP_OUT for e in p.events):
            continue
        morning = _morning(p)
        if morning.sum() >= 20:
            sds.append(float(np.std(p.readings.systolic[morning])))
    mean, _sd, low, high = pop.SBP_SD
    # Cuff artefacts add a little to the spread.
    assert mean - 1 <= float(np.median(sds)) <= mean + 2.5
    assert low - 1 <= min(sds)
    assert max(sds) <= high + 15


def _morning(p: pop.Patient) -> np.ndarray:
    local_hour = (p.readings.times - p.midnights[0]) % DAY_S / 3600
    return (p.readings.kinds == BP) & (local_hour < 12)


def test_home_systolic_means_and_morning_excess_by_profile(population: Population) -> None:
    """The midpoint of a patient's morning and evening systolic is the profile's mean;
    their difference is the morning excess (large for the morning-surge profile)."""
    for profile, (_, mean, spread) in pop.BP_PROFILES.items():
        midpoints, excesses = [], []
        for p in population.patients:
            if p.bp_profile != profile or p.events:
                continue
            r, morning = p.readings, _morning(p)
            evening = (r.kinds == BP) & ~morning
            if morning.sum() >= 5 and evening.sum() >= 5:
                am, pm = np.median(r.systolic[morning]), np.median(r.systolic[evening])
                midpoints.append((am + pm) / 2)
                excesses.append(am - pm)
        assert float(np.median(midpoints)) == pytest.approx(mean, abs=spread / 2 + 2)
        low, high = (
            pop.MORNING_SURGE_EXCESS
            if profile == pop.BpProfile.MORNING_SURGE
            else pop.MORNING_EXCESS
        )
        assert low - 4 <= float(np.median(excesses)) <= high + 4


def test_adherence_splits_as_kum_et_al(population: Population) -> None:
    """Share of patients measuring on at least 80% of the days they were enrolled and
    had not stopped: near the 57.7% adherent (some adherent patients fall just short)."""
    adherent = 0
    for p in population.patients:
        stopped = next((e.onset for e in p.events if e.kind == EventKind.DROP_OUT), 60 * DAY_S)
        days = np.unique(np.floor((p.readings.times - p.midnights[0]) / DAY_S))
        adherent += len(days) / max(1.0, stopped / DAY_S) >= 0.8
    assert 0.35 <= adherent / 400 <= pop.ADHERENT_SHARE + 0.05


def test_drop_outs_stop_at_a_local_midnight_and_send_nothing_after(
    population: Population,
) -> None:
    dropped = [
        p for p in population.patients if any(e.kind == EventKind.DROP_OUT for e in p.events)
    ]
    assert len(dropped) / 400 == pytest.approx(pop.DROPOUT_SHARE, abs=0.05)
    for p in dropped:
        event = next(e for e in p.events if e.kind == EventKind.DROP_OUT)
        assert event.onset in p.midnights
        assert event.end == 60 * DAY_S
        assert not event.critical
        assert np.all(p.readings.times < event.onset)


def test_every_event_is_labelled_with_its_onset_and_severity(population: Population) -> None:
    kinds = Counter()
    for p in population.patients:
        assert list(p.events) == sorted(p.events, key=lambda e: e.onset)
        for event in p.events:
            kinds[event.kind] += 1
            assert 0 <= event.onset < event.end
            if event.kind in (EventKind.HYPERTENSIVE_CRISIS, EventKind.DECOMPENSATION):
                assert event.critical
            if event.kind in (EventKind.UNCONTROLLED_BP, EventKind.HYPERGLYCAEMIA):
                assert not event.critical
    assert set(kinds) == set(EventKind)


def _within(p: pop.Patient, kind: int, start: float, end: float) -> np.ndarray:
    r = p.readings
    return (r.kinds == kind) & (r.times >= start) & (r.times < end)


def test_a_crisis_shows_in_the_readings_from_its_onset(population: Population) -> None:
    for p in population.patients:
        for e in p.events:
            if e.kind == EventKind.HYPERTENSIVE_CRISIS:
                during = _within(p, BP, e.onset, e.end)
                assert np.all(p.readings.systolic[during] >= 160)


def test_uncontrolled_bp_raises_the_mean_after_its_onset(population: Population) -> None:
    for p in population.patients:
        for e in p.events:
            if e.kind == EventKind.UNCONTROLLED_BP:
                before = p.readings.systolic[_within(p, BP, 0, e.onset)]
                during = p.readings.systolic[_within(p, BP, e.onset + 3 * DAY_S, e.end)]
                if before.size >= 5 and during.size >= 5:
                    assert np.median(during) - np.median(before) >= 8


def test_decompensations_gain_weight_up_to_their_end(population: Population) -> None:
    """On average over the decompensations, the last two days weigh more than the week
    before the onset by about the documented gains (the smallest drown in the noise)."""
    gains = []
    for p in population.patients:
        for e in p.events:
            if e.kind != EventKind.DECOMPENSATION:
                continue
            w = p.readings.weight_kg
            before = w[_within(p, WEIGHT, e.onset - 7 * DAY_S, e.onset)]
            last = w[_within(p, WEIGHT, e.end - 2 * DAY_S, e.end)]
            if before.size and last.size:
                gains.append(float(np.mean(last)) - float(np.mean(before)))
    assert len(gains) >= 3
    assert 0.8 <= float(np.mean(gains)) <= 14 * pop.KG_PER_LB


def test_each_hypoglycaemia_has_a_low_reading_within_its_first_half_hour(
    population: Population,
) -> None:
    for p in population.patients:
        for e in p.events:
            if e.kind == EventKind.HYPOGLYCAEMIA:
                found = p.readings.glucose_mg_dl[_within(p, GLUCOSE, e.onset, e.onset + 1800)]
                assert found.size
                assert found.min() < pop.HYPO_MG_DL
                assert e.critical == (found.min() < pop.LEVEL_2_MG_DL)


def test_hypoglycaemia_rate_of_insulin_patients_is_hats(population: Population) -> None:
    insulin = [p for p in population.patients if p.insulin]
    events = sum(e.kind == EventKind.HYPOGLYCAEMIA for p in insulin for e in p.events)
    per_year = events / len(insulin) / 60 * 365
    # Drop-outs stop measuring; scheduled checks find a few more.
    assert pop.HYPO_PER_YEAR_INSULIN * 0.7 <= per_year <= pop.HYPO_PER_YEAR_INSULIN * 1.5


def test_some_scales_read_heavy_on_carpet() -> None:
    """A scale on carpet some days: heavier readings than the patient's others, by the
    documented share of body weight."""
    population = simulate(300, 30, seed=8)
    offsets = []
    for p in population.patients:
        w = p.readings.weight_kg[p.readings.kinds == WEIGHT]
        if w.size >= 20 and not p.events:
            offsets.append((np.max(w) - np.median(w)) / np.median(w))
    low, high = pop.CARPET_OFFSET
    assert any(o >= low for o in offsets)
    assert max(offsets) <= high + 0.03
