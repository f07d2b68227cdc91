"""FHIR Bulk Data Access (hl7.org/fhir/uv/bulkdata, v2) without I/O: the kick-off's
parameters, an export's progress per type, and the completion manifest. Pure.

An export writes each type's NDJSON files in turn, in `TYPES` order. Its progress keeps,
per type, where the files written so far end (`cursor`: the last id, or an Observation's
position in the export order), how many files and resources, and whether it is done;
each file commits with the progress past it, so an exporter taking up a job another
left off writes neither a gap nor a line twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rpm.fhir.observations import Position
from rpm.fhir.search import SearchError, date_condition

# What an export holds, in the order it writes them: the patients, their readings, their
# devices, their alerts (as Flags, resolved ones included, inactive).
TYPES = ("Patient", "Observation", "Device", "Flag")
# `_outputFormat` values meaning NDJSON, as the IG lists them.
NDJSON_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
PARAMETERS = frozenset({"_type", "_since", "_outputFormat"})


class NotPermitted(Exception):
    """A type asked for that the client's scopes do not read (403)."""


def check_parameters(names: Iterable[str]) -> None:
    """The IG lets a server refuse what it does not support, rather than leave it out
    of an export the client would take for what it asked."""
    if unknown := sorted(set(names) - PARAMETERS):
        raise SearchError(
            f"not supported here: {', '.join(unknown)} ($export takes"
            f" {', '.join(sorted(PARAMETERS))})"
        )


def output_format(value: str | None) -> None:
    if value is not None and value not in NDJSON_FORMATS:
        raise SearchError(
            f"_outputFormat {value!r}: rpm writes NDJSON only (application/fhir+ndjson)"
        )


def types(values: Sequence[str] | None, readable: set[str]) -> list[str]:
    """The types an export writes: those `_type` names (comma-separated, repeatable), else
    every type the client may read; `NotPermitted` for one it may not."""
    if not values:
        chosen = [t for t in TYPES if t in readable]
        if not chosen:
            raise NotPermitted(f"the access token's scopes read none of {', '.join(TYPES)}")
        return chosen
    asked = {t.strip() for value in values for t in value.split(",") if t.strip()}
    if unknown := sorted(asked - set(TYPES)):
        raise SearchError(f"_type {', '.join(unknown)}: an export holds {', '.join(TYPES)} only")
    if denied := sorted(asked - readable):
        raise NotPermitted(
            f"the access token's scopes do not read {', '.join(denied)}"
            " (ask the token for system/<Type>.read)"
        )
    return [t for t in TYPES if t in asked]


def since(value: str | None) -> datetime | None:
    """`_since`: an instant with its zone (FHIR's instant); resources changed from then on."""
    if value is None:
        return None
    if value[:2].isalpha():
        raise SearchError(f"_since {value!r}: an instant, without a prefix")
    start = date_condition(value).start
    if start.tzinfo is None:
        raise SearchError(
            f"_since {value!r}: an instant with its time zone, e.g. 2026-11-01T00:00:00Z"
        )
    return start


def position_json(position: Position) -> dict[str, Any]:
    return {
        "patient_id": position.patient_id,
        "measured_at": position.measured_at.isoformat(),
        "device_id": position.device_id,
        "kind": position.kind,
        "part": position.part,
    }


def position_of(value: dict[str, Any] | None) -> Position | None:
    if value is None:
        return None
    return Position(
        int(value["patient_id"]),
        datetime.fromisoformat(value["measured_at"]),
        int(value["device_id"]),
        str(value["kind"]),
        int(value["part"]),
    )


@dataclass(frozen=True)
class TypeProgress:
    cursor: Any = None
    files: int = 0
    count: int = 0
    done: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "files": self.files, "count": self.count, "done": self.done}


def progress_of(progress: dict[str, Any], resource_type: str) -> TypeProgress:
    return TypeProgress(**progress.get(resource_type, {}))


def next_type(types_: Sequence[str], progress: dict[str, Any]) -> str | None:
    """The first type not written to its end yet; None: the export is complete."""
    return next((t for t in types_ if not progress_of(progress, t).done), None)


def progress_text(types_: Sequence[str], progress: dict[str, Any]) -> str:
    """`X-Progress`: how far the export is, type by type."""
    parts = []
    for resource_type in types_:
        state = progress_of(progress, resource_type)
        if state.done:
            parts.append(f"{resource_type} done ({state.count})")
        elif state.count or state.cursor is not None:
            parts.append(f"{resource_type} {state.count} so far")
        else:
            parts.append(f"{resource_type} waiting")
    return "; ".join(parts)


@dataclass(frozen=True)
class OutputFile:
    type: str
    seq: int
    count: int


def manifest(
    transaction_time: datetime, request: str, files: Sequence[OutputFile], file_url: str
) -> dict[str, Any]:
    """The completion manifest; `file_url` has `{type}` and `{seq}` to fill in."""
    return {
        "transactionTime": transaction_time.isoformat(),
        "request": request,
        "requiresAccessToken": True,
        "output": [
            {
                "type": f.type,
                "url": file_url.format(type=f.type, seq=f.seq),
                "count": f.count,
            }
            for f in files
        ],
        "error": [],
    }
