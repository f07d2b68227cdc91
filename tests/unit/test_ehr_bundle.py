"""The EHR push's pure core: the transaction Bundle an EHR receives, and what its answers
mean for the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from rpm.ehr.bundle import PushItem, Systems, Verdict, judge, transaction
from rpm.fhir.observations import Measurement

SYSTEMS = Systems(
    "urn:oid:2.16.840.1.113883.19.5", "https://rpm.example.org/fhir/sid/device-serial"
)
AT = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)


def _cuff(push_id: int, mrn: str = "MRN-1") -> PushItem:
    measurement = Measurement(
        patient_id=7, device_id=3, device_serial="BP-000123", kind="blood_pressure",
        measured_at=AT, measured_utc_offset_min=-360, received_at=AT, systolic_mmhg=128.0,
        diastolic_mmhg=82.0, pulse_bpm=71.0, weight_kg=None, glucose_mg_dl=None,
    )  # fmt: skip
    return PushItem(push_id, measurement, mrn)


def test_each_observation_is_a_conditional_create_on_its_identifier() -> None:
    bundle = transaction([_cuff(1)], SYSTEMS)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    panel, pulse = bundle["entry"]
    for entry in (panel, pulse):
        resource = entry["resource"]
        assert "id" not in resource  # the EHR gives its own
        identifier = resource["identifier"][0]
        assert entry["request"] == {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier=urn:ietf:rfc:3986|{identifier['value']}",
        }
        # fullUrl never equals the identifier: a server may rewrite strings equal to it.
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["fullUrl"] != identifier["value"]
        assert resource["subject"] == {
            "reference": "Patient?identifier=urn:oid:2.16.840.1.113883.19.5|MRN-1"
        }
        assert resource["device"] == {
            "identifier": {"system": SYSTEMS.device_serial, "value": "BP-000123"},
            "display": "BP-000123",
        }
        assert resource["effectiveDateTime"] == "2026-11-24T07:30:00-06:00"
    assert panel["resource"]["code"]["coding"][0]["code"] == "85354-9"
    assert pulse["resource"]["code"]["coding"][0]["code"] == "8867-4"


def test_a_reference_with_query_characters_is_escaped() -> None:
    (entry, _) = transaction([_cuff(1, mrn="A&B 1")], SYSTEMS)["entry"]
    subject = entry["resource"]["subject"]["reference"]
    assert subject == "Patient?identifier=urn:oid:2.16.840.1.113883.19.5|A%26B%201"


def test_the_same_reading_makes_the_same_bundle() -> None:
    assert transaction([_cuff(1)], SYSTEMS) == transaction([_cuff(2)], SYSTEMS)


def _outcome(text: str, code: str = "processing") -> dict[str, object]:
    issue = {"severity": "error", "code": code, "details": {"text": text}}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@pytest.mark.parametrize(
    ("status", "body", "verdict", "reason"),
    [
        (200, {"resourceType": "Bundle", "type": "transaction-response"}, Verdict.SENT, None),
        (200, "<html>", Verdict.RETRY, "HTTP 200 but no transaction-response Bundle"),
        (None, None, Verdict.RETRY, "no answer from the EHR: connection refused"),
        (503, None, Verdict.RETRY, "HTTP 503: no OperationOutcome in the answer"),
        (429, _outcome("slow down", "throttled"), Verdict.RETRY, "HTTP 429: throttled: slow down"),
        (401, _outcome("bad token", "login"), Verdict.RETRY, "HTTP 401: login: bad token"),
        (
            400,
            _outcome("no such patient"),
            Verdict.REFUSED,
            "HTTP 400: processing: no such patient",
        ),
        (422, _outcome("invalid"), Verdict.REFUSED, "HTTP 422: processing: invalid"),
    ],
)
def test_an_answer_means_sent_retry_or_refused(
    status: int | None, body: object, verdict: Verdict, reason: str | None
) -> None:
    answer = judge(status, body, "connection refused")
    assert (answer.verdict, answer.reason) == (verdict, reason)
    # The log's summary never carries the server's words (they may quote an identifier).
    assert answer.summary in ("no answer", f"HTTP {status}")


def test_a_long_reason_is_clipped() -> None:
    answer = judge(400, _outcome("x" * 2000))
    assert answer.reason is not None
    assert len(answer.reason) == 500
    assert answer.reason.endswith("…")
