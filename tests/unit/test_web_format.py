"""How the UI words ages, codes, timestamps and the core's messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from rpm.web.format import age, label, reading, sentence, timestamp

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "said"),
    [
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=12, seconds=59), "12 min"),
        (timedelta(hours=1), "1 h"),
        (timedelta(hours=3, minutes=5), "3 h 5 min"),
        (timedelta(days=2), "2 d"),
        (timedelta(days=2, hours=4, minutes=59), "2 d 4 h"),
        # A clock a little ahead of ours is no negative age.
        (timedelta(seconds=-30), "just now"),
    ],
)
def test_an_age_is_in_at_most_two_units(ago: timedelta, said: str) -> None:
    assert age(NOW - ago, NOW) == said


def test_codes_read_as_words_and_messages_as_sentences() -> None:
    assert label("care_manager") == "care manager"
    assert sentence("alert 5 is already resolved (by Nurse One)") == (
        "Alert 5 is already resolved (by Nurse One)."
    )
    assert sentence("Done!") == "Done!"
    assert sentence("") == ""


def test_timestamps_are_utc_to_the_minute() -> None:
    chicago_noon = datetime(2026, 11, 24, 12, 0, 30, tzinfo=timezone(timedelta(hours=-6)))
    assert timestamp(chicago_noon) == "2026-11-24 18:00 UTC"


def test_a_readings_values_are_words_each_to_its_units_decimals() -> None:
    empty = dict.fromkeys(
        (
            "systolic_mmhg",
            "diastolic_mmhg",
            "pulse_bpm",
            "weight_kg",
            "glucose_mg_dl",
            "meal_context",
        )
    )
    assert reading(
        SimpleNamespace(**empty | {"systolic_mmhg": 182.4, "diastolic_mmhg": 121, "pulse_bpm": 88})
    ) == ("182/121 mmHg, pulse 88 bpm")
    assert reading(SimpleNamespace(**empty | {"weight_kg": 81.44})) == "81.4 kg"
    assert reading(
        SimpleNamespace(**empty | {"glucose_mg_dl": 54.2, "meal_context": "before_meal"})
    ) == ("54 mg/dL (before meal)")
