"""The ingest pipeline, pure: messages in, rows to store and dead letters out.

Two steps, so that the adapters can look the devices up once per batch in between:

1. `decode` a message (topic + bytes) into items, each naming its device's serial;
2. `resolve` a batch of decoded messages against the devices it names: which patient had
   the device when each reading was measured, whether the device can measure that kind.

Every message ends either with all its readings stored, or in the dead letter with the
reason for each reading that was not (its good readings are stored all the same).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from rpm.devices.checks import TimeLimits
from rpm.devices.codecs import decode_readings, decode_status
from rpm.devices.model import (
    MEASURES,
    DeviceKind,
    DeviceStatus,
    Reading,
    Reason,
    Rejection,
)
from rpm.devices.tenovi import decode_tenovi

TOPIC_PREFIX = "rpm/v1/devices/"
_TOPIC = re.compile(r"^rpm/v1/devices/([A-Za-z0-9._:-]{1,64})/(readings|status)$")
# Webhook messages are filed under webhook/<vendor>/<integration>.
_TENOVI_TOPICS = "webhook/tenovi/"


class Transport(StrEnum):
    MQTT = "mqtt"
    HTTP = "http"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as it reached us, before anything was made of it."""

    transport: Transport
    topic: str  # the MQTT topic, or webhook/<vendor>/<integration> for HTTP
    payload: bytes
    received_at: datetime


# Item and ReadingRow, made once a reading on the ingest hot path, are named tuples: as
# immutable as a frozen dataclass, whose every field costs a call of object.__setattr__
# to set (about 1,250 instructions; docs/benchmarks.md, "ingest").
class Item(NamedTuple):
    serial: str | None
    outcome: Reading | Rejection | DeviceStatus
    # Position in an array payload, to name it in a rejection; None for a lone item.
    # (Not `index`, which would hide tuple.index.)
    position: int | None = None


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    envelope: Envelope
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Assignment:
    patient_id: int
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class KnownDevice:
    id: int
    serial: str
    kind: DeviceKind
    active: bool
    assignments: tuple[Assignment, ...]

    def patient_at(self, moment: datetime) -> int | None:
        for period in self.assignments:
            if period.start <= moment and (period.end is None or moment < period.end):
                return period.patient_id
        return None


class ReadingRow(NamedTuple):
    reading: Reading
    device_id: int
    patient_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    envelope: Envelope
    device_serial: str | None
    rejections: tuple[Rejection, ...]
    stored_alongside: int  # readings of the same message that were stored

    @property
    def reason(self) -> Reason:
        return self.rejections[0].reason

    @property
    def detail(self) -> str:
        details = "; ".join(r.describe() for r in self.rejections)
        if self.stored_alongside:
            return f"{details} (the message's other {self.stored_alongside} reading(s) were stored)"
        return details


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    device_id: int
    status: DeviceStatus
    received_at: datetime


@dataclass
class BatchPlan:
    """What one batch of messages becomes: written in one transaction."""

    messages: int = 0
    rows: list[ReadingRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    # The latest receive time per device that sent anything we could attribute.
    last_seen: dict[int, datetime] = field(default_factory=dict)


def decode(envelope: Envelope, limits: TimeLimits) -> DecodedMessage:
    """Step 1: what the message says, before we know anything about its device."""
    if envelope.topic.startswith(_TENOVI_TOPICS):
        decoded = decode_tenovi(envelope.payload, received_at=envelope.received_at, limits=limits)
        return DecodedMessage(envelope, _items(decoded))
    match = _TOPIC.match(envelope.topic)
    if match is None:
        rejection = Rejection(
            Reason.BAD_TOPIC,
            f"topic {envelope.topic!r} is not rpm/v1/devices/<serial>/readings or /status",
        )
        return DecodedMessage(envelope, (Item(None, rejection),))
    serial, channel = match[1], match[2]
    if channel == "status":
        return DecodedMessage(envelope, (Item(serial, decode_status(envelope.payload)),))
    readings = decode_readings(envelope.payload, received_at=envelope.received_at, limits=limits)
    return DecodedMessage(envelope, _items([(serial, outcome) for outcome in readings]))


def webhook_topic(vendor: str, integration: str) -> str:
    """What a webhook message is filed under: its vendor and the integration that sent it."""
    return f"webhook/{vendor}/{integration}"


def _items(
    decoded: list[tuple[str | None, Reading | Rejection | DeviceStatus]],
) -> tuple[Item, ...]:
    if len(decoded) == 1:
        return (Item(*decoded[0]),)
    return tuple(Item(serial, outcome, i) for i, (serial, outcome) in enumerate(decoded))


def serials(messages: Iterable[DecodedMessage]) -> set[str]:
    """The devices a batch names: look these up, then `resolve`."""
    return {item.serial for m in messages for item in m.items if item.serial is not None}


def resolve(messages: Iterable[DecodedMessage], devices: Mapping[str, KnownDevice]) -> BatchPlan:
    """Step 2: attribute each reading to its device and patient, or reject it."""
    plan = BatchPlan()
    for message in messages:
        plan.messages += 1
        received_at = message.envelope.received_at
        rejections: list[Rejection] = []
        stored = 0
        for item in message.items:
            device = devices.get(item.serial) if item.serial is not None else None
            outcome = _attribute(item, device, received_at)
            if isinstance(outcome, Rejection):
                rejections.append(outcome)
            elif isinstance(outcome, StatusUpdate):
                plan.statuses.append(outcome)
            else:
                plan.rows.append(outcome)
                stored += 1
        # Once a device, not once a reading: a message's readings mostly share one.
        serial_names = {i.serial for i in message.items if i.serial is not None}
        for name in serial_names:
            if (device := devices.get(name)) is not None:
                previous = plan.last_seen.get(device.id)
                plan.last_seen[device.id] = max(received_at, previous or received_at)
        if rejections:
            plan.dead_letters.append(
                DeadLetter(
                    message.envelope,
                    serial_names.pop() if len(serial_names) == 1 else None,
                    tuple(rejections),
                    stored,
                )
            )
    return plan


def _attribute(
    item: Item, device: KnownDevice | None, received_at: datetime
) -> ReadingRow | StatusUpdate | Rejection:
    outcome = item.outcome
    if isinstance(outcome, Rejection):
        return outcome
    index = item.position
    if device is None:
        return Rejection(
            Reason.UNKNOWN_DEVICE,
            f"no device with serial {item.serial!r} is registered",
            index,
        )
    if not device.active:
        return Rejection(Reason.INACTIVE_DEVICE, f"device {device.serial} is deactivated", index)
    if isinstance(outcome, DeviceStatus):
        return StatusUpdate(device.id, outcome, received_at)
    if outcome.kind not in MEASURES[device.kind]:
        return Rejection(
            Reason.KIND_MISMATCH,
            f"device {device.serial} is a {device.kind.value.replace('_', ' ')}; "
            f"it cannot send {outcome.kind.value.replace('_', ' ')} readings",
            index,
        )
    patient_id = device.patient_at(outcome.measured_at)
    if patient_id is None:
        return Rejection(
            Reason.UNASSIGNED_DEVICE,
            f"device {device.serial} was not assigned to a patient at "
            f"{outcome.measured_at.isoformat()}; assign it, then replay this message",
            index,
        )
    return ReadingRow(outcome, device.id, patient_id, received_at)
