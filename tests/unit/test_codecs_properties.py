"""Property-based: whatever arrives, the codecs end in readings or rejections, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from rpm.devices.codecs import decode_readings
from rpm.devices.model import Reading, Rejection

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

VALID = [
    {
        "kind": "blood_pressure",
        "measured_at": "2026-11-24T07:30:00-05:00",
        "systolic": 128,
        "diastolic": 82,
        "pulse": 71,
        "unit": "mmHg",
    },
    {"kind": "body_weight", "measured_at": "2026-11-24T07:30:00Z", "weight": 181.4, "unit": "lb"},
    {
        "kind": "blood_glucose",
        "measured_at": "2026-11-24T07:30:00+01:00",
        "glucose": 5.4,
        "unit": "mmol/L",
        "meal": "fasting",
    },
    {
        "systolic_blood_pressure": {"value": 115, "unit": "mmHg"},
        "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
        "effective_time_frame": {"date_time": "2026-11-24T02:25:00-08:00"},
    },
    {
        "body_weight": {"value": 50, "unit": "kg"},
        "effective_time_frame": {
            "time_interval": {
                "start_date_time": "2026-11-20T09:45:00-08:00",
                "end_date_time": "2026-11-21T10:40:00-08:00",
            }
        },
        "descriptive_statistic": "minimum",
    },
]


def _check(payload: bytes) -> None:
    decoded = decode_readings(payload, received_at=NOW)
    assert decoded
    assert all(isinstance(d, Reading | Rejection) for d in decoded)
    for d in decoded:
        if isinstance(d, Rejection):
            assert d.detail


@given(st.binary(max_size=300))
def test_any_bytes(payload: bytes) -> None:
    _check(payload)


@given(st.one_of(json_values, st.lists(json_values, max_size=5)))
def test_any_json(document: object) -> None:
    _check(json.dumps(document).encode())


@settings(max_examples=300)
@given(
    st.sampled_from(VALID),
    st.data(),
)
def test_mutated_valid_readings(original: dict[str, object], data: st.DataObject) -> None:
    document = dict(original)
    key = data.draw(st.sampled_from([*document, "extra"]))
    mutation = data.draw(st.sampled_from(["replace", "delete"]))
    if mutation == "delete":
        document.pop(key, None)
    else:
        document[key] = data.draw(json_values)
    _check(json.dumps(document).encode())


@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=20))
def test_valid_backlogs_are_stored_whole(documents: list[dict[str, object]]) -> None:
    decoded = decode_readings(json.dumps(documents).encode(), received_at=NOW)
    assert len(decoded) == len(documents)
    assert all(isinstance(d, Reading) for d in decoded)
