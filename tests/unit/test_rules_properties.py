"""Property-based: rules stay quiet inside their bounds, decide the same in any unit,
and do not depend on the order rows arrive in."""

from __future__ import annotations

from random import Random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rpm.devices.checks import MG_DL_PER_MMOL_L
from rpm.rules.evaluate import History, HistoryRow, trace
from rpm.rules.plan import ChangeRule, CountRule, MeanRule, Op, ReadingRule, ThresholdRule
from rpm.rules.templates import DIABETES, HEART_FAILURE, HYPERTENSION
from tests.unit.rules_builders import at, bp, evaluate, glucose, limit, weight_lb

FAST = settings(max_examples=60, deadline=None)

hours = st.lists(st.integers(0, 24 * 14), min_size=1, max_size=25, unique=True)


def _rule(kind: str, op: Op, value: int) -> ReadingRule:
    limits = [limit("systolic", op, value, "mmHg")]
    if kind == "count":
        return CountRule(id="r", n=2, of_last=3, limits=limits)
    if kind == "mean":
        return MeanRule(id="r", window_hours=72, min_readings=1, limits=limits)
    return ThresholdRule(id="r", limits=limits)


@FAST
@given(
    st.sampled_from(["threshold", "count", "mean"]),
    st.sampled_from(list(Op)),
    st.integers(60, 290),
    hours,
    st.data(),
)
def test_no_rule_fires_on_readings_inside_its_bounds(
    kind: str, op: Op, value: int, times: list[int], data: st.DataObject
) -> None:
    # "Inside" includes the limit itself where the op is strict.
    edge = value if op in (Op.ABOVE, Op.BELOW) else value - 1 if op.upward else value + 1
    inside = st.integers(40, edge) if op.upward else st.integers(edge, 320)
    rows = [bp(at(h), data.draw(inside)) for h in times]
    assert evaluate(_rule(kind, op, value), rows) == []


@FAST
@given(st.integers(1000, 2500), st.integers(5, 100), hours, st.data())
def test_no_change_rule_fires_within_a_band_narrower_than_its_limit(
    base: int, rise: int, times: list[int], data: st.DataObject
) -> None:
    rule = ChangeRule(
        id="r", window_hours=72, limits=[limit("weight", "at_or_above", rise / 10, "lb")]
    )
    tenths = st.integers(base, base + rise - 1)
    rows = [weight_lb(at(h), data.draw(tenths) / 10) for h in times]
    assert evaluate(rule, rows) == []


def _fires(op: Op, reading: int, bound: int) -> bool:
    match op:
        case Op.AT_OR_ABOVE:
            return reading >= bound
        case Op.ABOVE:
            return reading > bound
        case Op.AT_OR_BELOW:
            return reading <= bound
        case Op.BELOW:
            return reading < bound


@FAST
@given(st.sampled_from(list(Op)), st.integers(1000, 3000), hours, st.data())
def test_a_weight_limit_in_lb_decides_as_pounds_would(
    op: Op, bound: int, times: list[int], data: st.DataObject
) -> None:
    """Readings and limit in tenths of a pound, stored in kg: the decision is the one
    the pounds make, exactly at the limit too."""
    readings = data.draw(st.lists(st.integers(bound - 20, bound + 20), min_size=len(times),
                                  max_size=len(times)))  # fmt: skip
    rule = ThresholdRule(id="r", limits=[limit("weight", op, bound / 10, "lb")])
    rows = [weight_lb(at(h), r / 10) for h, r in zip(times, readings, strict=True)]
    expected = sorted(at(h) for h, r in zip(times, readings, strict=True) if _fires(op, r, bound))
    assert [f.at for f in evaluate(rule, rows)] == expected


@FAST
@given(st.sampled_from(list(Op)), st.integers(20, 300), hours, st.data())
def test_a_glucose_limit_in_mmol_l_decides_as_mmol_l_would(
    op: Op, bound: int, times: list[int], data: st.DataObject
) -> None:
    """Readings and limit in tenths of mmol/L, stored as float32 mg/dL."""
    readings = data.draw(st.lists(st.integers(bound - 3, bound + 3), min_size=len(times),
                                  max_size=len(times)))  # fmt: skip
    rule = ThresholdRule(id="r", limits=[limit("glucose", op, bound / 10, "mmol/L")])
    rows = [
        glucose(at(h), float(np.float32(r / 10 * MG_DL_PER_MMOL_L)))
        for h, r in zip(times, readings, strict=True)
    ]
    expected = sorted(at(h) for h, r in zip(times, readings, strict=True) if _fires(op, r, bound))
    assert [f.at for f in evaluate(rule, rows)] == expected


@FAST
@given(st.integers(5, 60), st.lists(st.integers(1500, 1600), min_size=2, max_size=12))
def test_a_gain_limit_in_lb_decides_as_pounds_would(rise: int, readings: list[int]) -> None:
    """A daily scale in pounds against a gain limit in pounds over the whole series."""
    rule = ChangeRule(
        id="r", window_hours=24 * 30, limits=[limit("weight", "at_or_above", rise / 10, "lb")]
    )
    rows = [weight_lb(at(24 * d), r / 10) for d, r in enumerate(readings)]
    expected = [at(24 * d) for d in range(1, len(readings))
                if readings[d] - min(readings[:d]) >= rise]  # fmt: skip
    assert [f.at for f in evaluate(rule, rows)] == expected


COUNT = CountRule(id="c", n=2, of_last=3, limits=[limit("systolic", "above", 150, "mmHg")])
RULES = [*HYPERTENSION, *HEART_FAILURE, *DIABETES, COUNT]


def _row(hour: int, value: int) -> HistoryRow:
    kind = hour % 3
    if kind == 0:
        return bp(at(hour), 100 + value, 60 + value // 2)
    if kind == 1:
        return weight_lb(at(hour), 170 + value / 10)
    return glucose(at(hour), 40 + 4 * value, "fasting")


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 24 * 10), st.integers(0, 100)), max_size=30,
             unique_by=lambda t: t[0]),
    st.randoms(use_true_random=False),
)  # fmt: skip
def test_the_result_does_not_depend_on_the_order_of_rows(
    points: list[tuple[int, int]], random: Random
) -> None:
    rows = [_row(h, v) for h, v in points]
    shuffled = list(rows)
    random.shuffle(shuffled)
    for rule in RULES:
        assert evaluate(rule, shuffled) == evaluate(rule, rows)
        traced = trace(rule, History.of(shuffled))
        assert traced.rank.tolist() == trace(rule, History.of(rows)).rank.tolist()
