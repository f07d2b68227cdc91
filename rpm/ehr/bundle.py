"""The EHR push's pure core: readings as a FHIR R4 transaction Bundle for the clinic's EHR,
and what the EHR's answer means for the outbox rows it carried.

Each Observation is the export's own (`rpm.fhir.observations`), changed only where rpm's
ids mean nothing to the EHR:

- `subject` is a conditional reference on the clinic's patient reference,
  `Patient?identifier=<system>|<external_ref>`, which the EHR resolves to its own
  patient (FHIR R4, http.html#trules: "Conditional References"); a reading of a patient
  the EHR does not know fails its transaction instead of creating a patient there;
- `device` is a logical reference, by the device's serial;
- the entry is a conditional create, `ifNoneExist: identifier=<the Observation's
  identifier>`, so that a second delivery (a retry after a lost answer, a pusher that
  died between sending and recording) finds the first and creates nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from rpm.fhir.observations import Measurement, observations

# A name-based UUID namespace for the Bundle entries' fullUrls, apart from the
# Observations' ids: a server may rewrite every string equal to a fullUrl in the Bundle
# (Medplum's does), and an Observation's identifier value must survive unchanged.
_ENTRY_NAMESPACE = uuid.UUID("1d8bd7a9-6b1f-4c55-a3c5-3f3b3a5e9c21")
# Identifier systems' values go into a query string: keep a URI's own characters.
_QUERY_SAFE = ":/|"
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class PushItem:
    """One outbox row: a stored reading and the clinic's reference for its patient."""

    push_id: int
    measurement: Measurement
    patient_reference: str


@dataclass(frozen=True)
class Systems:
    """The identifier systems an EHR matches on."""

    # The EHR's system for the clinic's patient reference (its MRN, usually).
    patient: str
    # Where a device's serial is an identifier: this rpm's own URI for them.
    device_serial: str


def transaction(items: Sequence[PushItem], systems: Systems) -> dict[str, Any]:
    """A transaction Bundle creating each item's Observations unless already there."""
    entries = []
    for item in items:
        for observation in observations(item.measurement):
            resource = _for_ehr(observation, item, systems)
            identifier = resource["identifier"][0]
            entries.append(
                {
                    "fullUrl": uuid.uuid5(_ENTRY_NAMESPACE, observation["id"]).urn,
                    "resource": resource,
                    "request": {
                        "method": "POST",
                        "url": "Observation",
                        "ifNoneExist": "identifier="
                        + quote(f"{identifier['system']}|{identifier['value']}", _QUERY_SAFE),
                    },
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _for_ehr(observation: dict[str, Any], item: PushItem, systems: Systems) -> dict[str, Any]:
    resource = {key: value for key, value in observation.items() if key != "id"}
    patient = quote(f"{systems.patient}|{item.patient_reference}", _QUERY_SAFE)
    resource["subject"] = {"reference": f"Patient?identifier={patient}"}
    serial = item.measurement.device_serial
    resource["device"] = {
        "identifier": {"system": systems.device_serial, "value": serial},
        "display": serial,
    }
    return resource


class Verdict(StrEnum):
    SENT = "sent"
    # Worth another try later: the EHR was away, busy, or refused rpm's credentials.
    RETRY = "retry"
    # The EHR refused the content: sending the same again would be refused again.
    REFUSED = "refused"


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    # In words, with the server's own (an OperationOutcome's issues), for admins.
    reason: str | None = None
    # Short and free of patient data, for logs: "HTTP 503", "no answer".
    summary: str = "ok"


# Statuses that say "not now" rather than "not this".
_TRANSIENT = frozenset({401, 403, 408, 425, 429})


def judge(status: int | None, body: Any, error: str | None = None) -> Answer:
    """What the EHR's answer to a transaction means. `status` None: no answer (`error`
    says why: refused connection, timeout)."""
    if status is None:
        return Answer(Verdict.RETRY, _clip(f"no answer from the EHR: {error}"), "no answer")
    summary = f"HTTP {status}"
    if 200 <= status < 300:
        if isinstance(body, dict) and body.get("type") == "transaction-response":
            return Answer(Verdict.SENT, summary=summary)
        return Answer(Verdict.RETRY, f"{summary} but no transaction-response Bundle", summary)
    reason = _clip(f"{summary}: {diagnostics(body)}")
    if status in _TRANSIENT or status >= 500:
        return Answer(Verdict.RETRY, reason, summary)
    return Answer(Verdict.REFUSED, reason, summary)


def diagnostics(body: Any) -> str:
    """An OperationOutcome's issues in words (or a note that the body was none)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return "no OperationOutcome in the answer"
    words = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        where = ", ".join(str(e) for e in issue.get("expression") or [])
        words.append(f"{issue.get('code', 'error')}: {text}" + (f" ({where})" if where else ""))
    return "; ".join(words) or "an OperationOutcome with no issue"


def _clip(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"
