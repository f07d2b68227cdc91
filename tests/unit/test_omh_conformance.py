"""The public Open mHealth conformance documents in ../shared/omh: every shouldPass one
is accepted, every shouldFail one rejected with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rpm.devices.checks import TimeLimits
from rpm.devices.codecs import decode_readings
from rpm.devices.model import Reading, Rejection

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "omh" / "test-data" / "omh"
DOCUMENTS = sorted(CONFORMANCE.glob("*/*/should*/*.json"))
# The documents date from 2013 to 2020: accept any age, as an import of history would.
ANY_AGE = TimeLimits(max_age=None)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _id(path: Path) -> str:
    return "/".join(path.parts[-4:])


def test_the_conformance_folder_is_there() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"{CONFORMANCE} is missing (it is shared/ beside the project)")
    assert {p.parts[-4] for p in DOCUMENTS} == {
        "blood-pressure",
        "body-weight",
        "blood-glucose",
        "heart-rate",
    }


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.parent.name == "shouldPass"], ids=_id)
def test_should_pass_documents_are_accepted(path: Path) -> None:
    [decoded] = decode_readings(path.read_bytes(), received_at=NOW, limits=ANY_AGE)
    assert isinstance(decoded, Reading), decoded
    assert decoded.kind.value.replace("_", "-") == path.parts[-4]
    assert decoded.measured_at.tzinfo is not None


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.parent.name == "shouldFail"], ids=_id)
def test_should_fail_documents_are_rejected_with_a_reason(path: Path) -> None:
    [decoded] = decode_readings(path.read_bytes(), received_at=NOW, limits=ANY_AGE)
    assert isinstance(decoded, Rejection), decoded
    assert decoded.detail


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.parent.name == "shouldPass"], ids=_id)
def test_should_pass_documents_are_accepted_as_data_points_too(path: Path) -> None:
    schema = path.parts[-4]
    body = path.read_text()
    version = path.parts[-3]
    point = (
        '{"header": {"id": "dp-1", "creation_date_time": "2026-11-24T07:30:00Z",'
        f' "schema_id": {{"namespace": "omh", "name": "{schema}", "version": "{version}"}}}},'
        f' "body": {body}}}'
    )
    [decoded] = decode_readings(point.encode(), received_at=NOW, limits=ANY_AGE)
    assert isinstance(decoded, Reading), decoded
    assert decoded.device_reading_id == "dp-1"
