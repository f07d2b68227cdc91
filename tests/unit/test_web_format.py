"""How the UI words ages, codes, timestamps and the core's messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from rpm.web.format import (
    ZONES,
    Clock,
    age,
    ago,
    day,
    hex_dump,
    label,
    reading,
    sentence,
    shown_payload,
)

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


def test_ago_is_an_age_as_a_phrase() -> None:
    assert ago(NOW - timedelta(seconds=10), NOW) == "just now"
    assert ago(NOW - timedelta(hours=3, minutes=5), NOW) == "3 h 5 min ago"


def test_codes_read_as_words_and_messages_as_sentences() -> None:
    assert label("care_manager") == "care manager"
    assert sentence("alert 5 is already resolved (by Nurse One)") == (
        "Alert 5 is already resolved (by Nurse One)."
    )
    assert sentence("Done!") == "Done!"
    assert sentence("") == ""


CHICAGO = Clock.of("America/Chicago", "UTC")


def test_times_are_on_the_readers_clock_with_its_zone() -> None:
    at = datetime(2026, 12, 5, 21, 23, 30, tzinfo=UTC)
    assert CHICAGO.timestamp(at) == "Sat 5 Dec 2026, 15:23 CST"
    assert CHICAGO.timestamp(datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) == "Wed 1 Jul 2026, 07:00 CDT"
    assert CHICAGO.iso(at) == "2026-12-05T15:23:30-06:00"
    assert CHICAGO.name == "America/Chicago"
    # No zone of the user's own or their staff record's: the service's.
    assert Clock.of(None, "Europe/Berlin").timestamp(at) == "Sat 5 Dec 2026, 22:23 CET"
    assert day(at.date()) == "Sat 5 Dec 2026"


def test_the_patients_time_is_beside_the_readers_when_it_reads_otherwise() -> None:
    at = datetime(2026, 12, 5, 21, 23, tzinfo=UTC)
    assert CHICAGO.beside_patient(at, "America/New_York") == (
        "Sat 5 Dec 2026, 15:23 CST (patient\xa016:23\xa0EST)"
    )
    late = datetime(2026, 12, 6, 5, 30, tzinfo=UTC)
    assert CHICAGO.beside_patient(late, "America/New_York") == (
        "Sat 5 Dec 2026, 23:30 CST (patient\xa0Sun\xa06\xa0Dec,\xa000:30\xa0EST)"
    )
    # The same clock: said once.
    assert CHICAGO.beside_patient(at, "America/Chicago") == "Sat 5 Dec 2026, 15:23 CST"


def test_form_times_are_on_the_readers_clock_and_instants_in_messages_too() -> None:
    entered = CHICAGO.entered("2026-12-05T15:23")
    assert entered.astimezone(UTC) == datetime(2026, 12, 5, 21, 23, tzinfo=UTC)
    assert CHICAGO.field(entered) == "2026-12-05T15:23"
    with pytest.raises(ValueError, match="isoformat"):
        CHICAGO.entered("yesterday")
    said = CHICAGO.words(
        "device BP-1 was not assigned to a patient at 2026-12-05T21:23:00+00:00; from"
        " 2026-12-05T21:23:00.5Z to 2026-12-05 16:23:00-05:00"
    )
    assert said == (
        "device BP-1 was not assigned to a patient at Sat 5 Dec 2026, 15:23 CST; from"
        " Sat 5 Dec 2026, 15:23 CST to Sat 5 Dec 2026, 15:23 CST"
    )


def test_zones_to_choose_from_are_places() -> None:
    assert ZONES[0] == "UTC"
    assert {"America/Chicago", "Europe/Berlin", "Asia/Kolkata"} <= set(ZONES)
    assert "US/Central" not in ZONES
    assert "EST5EDT" not in ZONES
    with pytest.raises(ValueError, match="not an IANA time zone name"):
        Clock.of("Mars/Olympus", "UTC")


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


def test_a_hex_dump_reads_like_hexdump_c() -> None:
    assert hex_dump(b'{"kind": "blood_pressure"}\xff') == (
        '00000000  7b 22 6b 69 6e 64 22 3a  20 22 62 6c 6f 6f 64 5f  |{"kind": "blood_|\n'
        '00000010  70 72 65 73 73 75 72 65  22 7d ff                 |pressure"}.|'
    )
    assert hex_dump(b"") == ""


def test_a_payload_is_text_when_it_is_utf8_with_nothing_hidden_in_it() -> None:
    shown = shown_payload('{"note": "<b>caf\u00e9</b>"}\r\n'.encode(), 100)
    assert shown.text == '{"note": "<b>caf\u00e9</b>"}\r\n'
    assert (shown.hex_because, shown.shown_bytes, shown.total_bytes) == (None, 26, 26)


@pytest.mark.parametrize(
    ("raw", "because"),
    [
        (b"\xff\xfe not json", "they are not UTF-8 text"),
        (b"ok\x00", "they hold control or invisible formatting characters"),
        ("abc\u202edcba".encode(), "they hold control or invisible formatting characters"),
    ],
)
def test_a_payload_is_hex_when_it_is_not_utf8_text_or_hides_something(
    raw: bytes, because: str
) -> None:
    shown = shown_payload(raw, 100)
    assert shown.hex_because == because
    assert shown.text == hex_dump(raw)


def test_a_long_payload_is_cut_and_says_how_much_is_shown() -> None:
    # "\u00e9" is two bytes: a cut between them leaves it out rather than half of it.
    shown = shown_payload("ab\u00e9cd".encode(), 3)
    assert (shown.text, shown.shown_bytes, shown.total_bytes) == ("ab", 2, 6)
    binary = shown_payload(bytes(range(256)), 32)
    assert binary.text == hex_dump(bytes(range(32)))
    assert (binary.shown_bytes, binary.total_bytes) == (32, 256)
