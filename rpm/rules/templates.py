"""Care-plan templates from clinical guidelines, chosen at enrolment and tuned per patient.

Every default cites its source beside the number (docs/care-plans.md lists them too).
They are starting points for a clinician to adjust, not medical advice. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rpm.devices.model import ReadingKind
from rpm.rules.plan import (
    BaselineRule,
    CarePlan,
    ChangeRule,
    Limit,
    MeanRule,
    Measure,
    MissedRule,
    Op,
    ReadingRule,
    Severity,
    ThresholdRule,
)

AHA_2017 = (
    "2017 ACC/AHA Guideline for the Prevention, Detection, Evaluation, and Management of"
    " High Blood Pressure in Adults (Whelton et al., Hypertension 2018;71:e13-e115)"
)
AHA_LOW_BP = "American Heart Association, 'Low Blood Pressure - When Blood Pressure Is Too Low'"
HF_2022 = (
    "2022 AHA/ACC/HFSA Guideline for the Management of Heart Failure (Heidenreich et al.,"
    " Circulation 2022;145:e895-e1032) and the HFSA patient guidance on daily weights"
)
ADA_2024 = (
    "American Diabetes Association, Standards of Care in Diabetes-2024, section 6"
    " (Glycemic Goals and Hypoglycemia), Diabetes Care 2024;47(Suppl 1):S111-S125"
)
ADA_DKA = (
    "ADA consensus on hyperglycemic crises (Kitabchi et al., Diabetes Care 2009;32:1335-1343):"
    " glucose > 250 mg/dL is the diabetic-ketoacidosis criterion"
)
LOCAL = "local protocol: a common remote-monitoring default; set it to your programme's"

# Hysteresis: how far back past a limit a value must go for an episode to end. About the
# size of a home device's measurement noise (cuffs +-5 mmHg; meters +-15% per ISO 15197).
BP_HYSTERESIS_MMHG = 5.0
PULSE_HYSTERESIS_BPM = 5.0
GLUCOSE_HYSTERESIS_MG_DL = 10.0


def _mmhg(measure: Measure, op: Op, value: float, severity: Severity, label: str = "") -> Limit:
    return Limit(
        measure=measure,
        op=op,
        value=value,
        unit="mmHg",
        severity=severity,
        hysteresis=BP_HYSTERESIS_MMHG,
        label=label,
    )


def _glucose(op: Op, value: float, severity: Severity, label: str) -> Limit:
    return Limit(
        measure=Measure.GLUCOSE,
        op=op,
        value=value,
        unit="mg/dL",
        severity=severity,
        hysteresis=GLUCOSE_HYSTERESIS_MG_DL,
        label=label,
    )


def _pulse(op: Op, value: float) -> Limit:
    return Limit(
        measure=Measure.PULSE,
        op=op,
        value=value,
        unit="bpm",
        severity=Severity.HIGH,
        hysteresis=PULSE_HYSTERESIS_BPM,
    )


def _weight_gain(pounds: float, severity: Severity) -> Limit:
    # The guidance is written in pounds; the limit keeps the unit it was written in.
    return Limit(
        measure=Measure.WEIGHT,
        op=Op.AT_OR_ABOVE,
        value=pounds,
        unit="lb",
        severity=severity,
        hysteresis=1.0,
    )


HYPERTENSION: tuple[ReadingRule, ...] = (
    ThresholdRule(
        id="bp_crisis",
        title="Hypertensive crisis",
        # AHA's chart reads "higher than 180 and/or higher than 120"; the rule takes the
        # safer side, at or above.
        limits=[
            _mmhg(Measure.SYSTOLIC, Op.AT_OR_ABOVE, 180, Severity.CRITICAL, "crisis"),
            _mmhg(Measure.DIASTOLIC, Op.AT_OR_ABOVE, 120, Severity.CRITICAL, "crisis"),
        ],
        advice=(
            "Ask the patient to rest five minutes and re-measure now; if it stays this high,"
            " or with chest pain, breathlessness, weakness or vision or speech changes, call"
            " emergency services."
        ),
        source=AHA_2017,
    ),
    MeanRule(
        id="bp_sustained_stage2",
        title="Sustained stage 2 hypertension",
        # Stage 2: systolic >= 140 or diastolic >= 90, judged on the mean of several readings.
        window_hours=7 * 24,
        min_readings=4,
        limits=[
            _mmhg(Measure.SYSTOLIC, Op.AT_OR_ABOVE, 140, Severity.WARNING, "stage 2"),
            _mmhg(Measure.DIASTOLIC, Op.AT_OR_ABOVE, 90, Severity.WARNING, "stage 2"),
        ],
        source=AHA_2017,
    ),
    ThresholdRule(
        id="systolic_low",
        title="Low blood pressure",
        limits=[_mmhg(Measure.SYSTOLIC, Op.BELOW, 90, Severity.HIGH, "low")],
        advice="Ask about dizziness, fainting and recent medication changes.",
        source=AHA_LOW_BP,
    ),
    ThresholdRule(
        id="pulse_out_of_range",
        title="Pulse out of range",
        limits=[_pulse(Op.BELOW, 40), _pulse(Op.ABOVE, 120)],
        source=LOCAL,
    ),
)

HEART_FAILURE: tuple[ReadingRule, ...] = (
    # Sources vary from 2 lb in a day to 2 kg in 3 days: both windows and limits are
    # the care manager's to change.
    ChangeRule(
        id="weight_gain_day",
        title="Weight gain in a day",
        window_hours=24,
        limits=[_weight_gain(3, Severity.HIGH)],
        advice="Ask about swelling and breathlessness; review diuretics with the prescriber.",
        cooldown_hours=24,
        source=HF_2022,
    ),
    ChangeRule(
        id="weight_gain_week",
        title="Weight gain in a week",
        window_hours=7 * 24,
        limits=[_weight_gain(5, Severity.HIGH)],
        advice="Ask about swelling and breathlessness; review diuretics with the prescriber.",
        cooldown_hours=72,
        source=HF_2022,
    ),
)

DIABETES: tuple[ReadingRule, ...] = (
    ThresholdRule(
        id="glucose_low",
        title="Hypoglycaemia",
        # Level 1: < 70 mg/dL (3.9 mmol/L); level 2, clinically significant: < 54 (3.0).
        limits=[
            _glucose(Op.BELOW, 70, Severity.HIGH, "level 1 hypoglycaemia"),
            _glucose(Op.BELOW, 54, Severity.CRITICAL, "level 2 hypoglycaemia"),
        ],
        advice="Contact the patient now: 15 g of fast-acting carbohydrate, re-check in 15 minutes.",
        source=ADA_2024,
    ),
    ThresholdRule(
        id="glucose_high",
        title="Hyperglycaemia",
        # 400 mg/dL as the critical bound is a local default, to be set per programme.
        limits=[
            _glucose(Op.ABOVE, 250, Severity.HIGH, "hyperglycaemia"),
            _glucose(Op.ABOVE, 400, Severity.CRITICAL, "critical hyperglycaemia"),
        ],
        advice="Ask about ketones, thirst and vomiting.",
        source=f"{ADA_DKA}; critical bound: {LOCAL}",
    ),
)


# The personal variants: the same guideline limits, with fewer alerts a nurse cannot act
# on. A single non-critical reading waits for the patient's repeat (never a crisis, nor
# level 2 hypoglycaemia), and each adds a rule on the patient's own baseline.
PAGE_CUSUM = (
    "Page's CUSUM (Page, Biometrika 1954;41:100-115) against the patient's own mean and"
    " spread; k = 0.5, h = 5 spreads (Montgomery, Introduction to Statistical Quality"
    " Control, 8th ed., 9.1). A local default: review after the first months"
)
AHA_REMEASURE = (
    "Measurement of Blood Pressure in Humans: AHA Scientific Statement (Muntner et al.,"
    " Hypertension 2019;73:e35-e66): home readings are repeated and averaged, one is not"
    " enough to act on"
)
REWEIGH = "HFSA patient guidance on daily weights (same scale, same clothes, after voiding)"
SECOND_DROP = (
    "Hortensius et al., Diabetes Care 2011;34:556-560: sugar on unwashed fingers reads"
    " falsely high; wash the hands and measure again"
)


def _confirmed(rule: ReadingRule, minutes: int, why: str) -> ReadingRule:
    """The rule, asking for a repeat reading within `minutes` before it alerts."""
    document = rule.model_dump(mode="json")
    document.update(confirm_within_minutes=minutes, source=f"{document['source']}; repeat: {why}")
    return type(rule).model_validate(document)


def _baseline(rule_id: str, title: str, measure: Measure, spread: float, unit: str,
              **more: object) -> BaselineRule:  # fmt: skip
    return BaselineRule.model_validate(
        {
            "id": rule_id,
            "title": title,
            "measure": measure,
            "direction": "up",
            # The floor is about a home device's noise: a steadier patient is not held to it.
            "min_spread": spread,
            "unit": unit,
            "advice": "A gradual change from the patient's own usual level: review at the"
            " next contact rather than at once.",
            "source": PAGE_CUSUM,
            **more,
        }
    )


_BY_ID = {rule.id: rule for rule in (*HYPERTENSION, *HEART_FAILURE, *DIABETES)}

HYPERTENSION_PERSONAL: tuple[ReadingRule, ...] = (
    _BY_ID["bp_crisis"],
    _BY_ID["bp_sustained_stage2"],
    _confirmed(_BY_ID["systolic_low"], 30, AHA_REMEASURE),
    _confirmed(_BY_ID["pulse_out_of_range"], 30, AHA_REMEASURE),
)

HEART_FAILURE_PERSONAL: tuple[ReadingRule, ...] = (
    # A day's gain of 3 lb is mostly day-to-day noise and scales on carpet (docs/
    # benchmarks.md, "Alert burden"); the same 3 lb over 3 days, confirmed by a re-weigh,
    # reaches back past a single heavy morning and catches a slow gain sooner.
    _confirmed(
        ChangeRule(
            id="weight_gain_3_days",
            title="Weight gain in 3 days",
            window_hours=72,
            limits=[_weight_gain(3, Severity.HIGH)],
            advice="Ask about swelling and breathlessness; review diuretics with the prescriber.",
            cooldown_hours=72,
            source=f"{HF_2022} (2-3 lb in a day or 5 lb in a week); 3 lb over 3 days: {LOCAL}",
        ),
        60,
        REWEIGH,
    ),
    # A week's gain is already judged against several days' weights: no repeat.
    _BY_ID["weight_gain_week"],
    # Over the last 5 days (a quadratic gain, steepest at the end, shows in several
    # weights) and a decision interval of 4 spreads: the benchmark's decompensations
    # with a gain of 2 lb or more are all found with the two rules above.
    _baseline(
        "weight_drift",
        "Weight above the patient's usual",
        Measure.WEIGHT,
        1,
        "lb",
        recent_hours=120,
        decision_sd=4,
    ),
)

DIABETES_PERSONAL: tuple[ReadingRule, ...] = (
    # Hypoglycaemia does not wait: the patient treats and re-checks in 15 minutes anyway,
    # and the nurse should know now.
    _BY_ID["glucose_low"],
    _confirmed(_BY_ID["glucose_high"], 30, SECOND_DROP),
    _baseline(
        "fasting_glucose_drift",
        "Fasting glucose above the patient's usual",
        Measure.GLUCOSE,
        10,
        "mg/dL",
        meal_contexts=["fasting"],
        learn_readings=7,
    ),
)


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    rules: tuple[ReadingRule, ...]
    expects: ReadingKind
    # Whole days without a reading of that kind before the missed-readings rule fires.
    missed_days: int


TEMPLATES = {
    t.name: t
    for t in (
        Template("hypertension", "Hypertension (AHA)", HYPERTENSION, ReadingKind.BLOOD_PRESSURE, 3),
        # Daily weights are the point of heart-failure monitoring: two missed days matter.
        Template("heart_failure", "Heart failure", HEART_FAILURE, ReadingKind.BODY_WEIGHT, 2),
        Template("diabetes", "Diabetes (ADA)", DIABETES, ReadingKind.BLOOD_GLUCOSE, 2),
        # The personal variants expect readings less often: a 3- or 2-day gap is common
        # for a patient who measures on half their days, and one alert per such gap was
        # 38% of the alerts (docs/benchmarks.md, "Alert burden"). A drop-out is still
        # found, within a week.
        Template(
            "hypertension_personal",
            "Hypertension (AHA), repeat readings and personal baseline",
            HYPERTENSION_PERSONAL,
            ReadingKind.BLOOD_PRESSURE,
            7,
        ),
        Template(
            "heart_failure_personal",
            "Heart failure, repeat readings and personal baseline",
            HEART_FAILURE_PERSONAL,
            ReadingKind.BODY_WEIGHT,
            4,
        ),
        Template(
            "diabetes_personal",
            "Diabetes (ADA), repeat readings and personal baseline",
            DIABETES_PERSONAL,
            ReadingKind.BLOOD_GLUCOSE,
            5,
        ),
    )
}


class UnknownTemplate(ValueError):
    pass


def plan_from_templates(names: Sequence[str]) -> CarePlan:
    """The plan for a patient enrolled under these templates: their rules, and one
    missed-readings rule expecting each template's kind of reading."""
    unknown = [n for n in names if n not in TEMPLATES]
    if unknown:
        choices = ", ".join(TEMPLATES)
        raise UnknownTemplate(
            f"unknown care-plan template(s) {', '.join(unknown)}: choose from {choices}"
        )
    chosen = [TEMPLATES[n] for n in dict.fromkeys(names)]
    rules: list[ReadingRule | MissedRule] = [rule for t in chosen for rule in t.rules]
    if chosen:
        rules.append(
            MissedRule(
                id="missed_readings",
                title="Missed readings",
                expects=[t.expects for t in chosen],
                days=min(t.missed_days for t in chosen),
                source=LOCAL,
            )
        )
    return CarePlan(rules=rules)
