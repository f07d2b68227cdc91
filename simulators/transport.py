"""Sending simulated messages the way devices do: MQTT publishes and webhook posts.

The adapters of the simulator. They know nothing of rpm beyond its public contract (the
MQTT topics and the webhook URL), exactly like a device or a vendor's gateway.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt

from simulators.devices import TENOVI_TOPIC, Message

# Publishes in flight at once: enough to keep a broker busy, within Mosquitto's defaults
# once raised (max_inflight_messages); each one is a QoS 1 round trip.
MAX_IN_FLIGHT = 200


class Pace(StrEnum):
    REALTIME = "realtime"  # each message at its own time, from now on
    ACCELERATED = "accelerated"  # the scenario's history squeezed into --duration seconds
    LOAD = "load"  # as fast as --rate allows, for --duration seconds


@dataclass(frozen=True)
class Target:
    mqtt_url: str
    webhook_url: str | None = None  # e.g. http://127.0.0.1:8000/webhooks/tenovi
    webhook_secret: str | None = None
    # mqtts:// only: the CA a device is given to verify the broker (docs/tls.md); None:
    # the system's trust store. Hostnames are always checked, as a device must.
    mqtt_ca: Path | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        if urlsplit(self.mqtt_url).scheme != "mqtts":
            return None
        context = ssl.create_default_context(cafile=self.mqtt_ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@dataclass
class Summary:
    sent: Counter[str] = field(default_factory=Counter)  # by message note
    errors: Counter[str] = field(default_factory=Counter)  # by error
    readings: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def messages(self) -> int:
        return sum(self.sent.values())

    def describe(self) -> str:
        rate = self.messages / self.seconds if self.seconds else 0.0
        lines = [
            f"sent {self.messages} messages ({self.readings} readings) in {self.seconds:.1f} s:"
            f" {rate:,.0f} messages/s",
            "  " + ", ".join(f"{note} {count}" for note, count in sorted(self.sent.items())),
        ]
        if self.errors:
            lines.append(
                "  errors: " + ", ".join(f"{e} x{n}" for e, n in self.errors.most_common())
            )
        return "\n".join(lines)


def wall_schedule(
    messages: Sequence[Message], pace: Pace, duration_s: float, rate: float
) -> list[float]:
    """When, in seconds from now, each message is sent."""
    if not messages:
        return []
    if pace == Pace.LOAD:
        return [i / rate for i in range(len(messages))]
    first = messages[0].send_at
    span = (messages[-1].send_at - first).total_seconds() or 1.0
    scale = 1.0 if pace == Pace.REALTIME else duration_s / span
    return [(m.send_at - first).total_seconds() * scale for m in messages]


async def send(
    messages: Sequence[Message],
    offsets: Sequence[float],
    target: Target,
    on_progress: Callable[[int], None] = lambda _: None,
) -> Summary:
    """Send each message at its offset (seconds from now), then report what happened."""
    summary = Summary()
    address = urlsplit(target.mqtt_url)
    async with aiomqtt.Client(
        address.hostname or "127.0.0.1",
        address.port or 1883,
        username=address.username,
        password=address.password,
        identifier=f"rpm-sim-{int(time.time())}",
        max_inflight_messages=MAX_IN_FLIGHT,
        tls_context=target.tls_context(),
    ) as client:
        # Many publishes in flight is the point here, not a leak to warn about.
        client.pending_calls_threshold = MAX_IN_FLIGHT
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()

        async def deliver(message: Message) -> None:
            try:
                if message.topic == TENOVI_TOPIC:
                    await asyncio.to_thread(_post, target, message.payload)
                else:
                    await client.publish(message.topic, message.payload, qos=1)
            except (aiomqtt.MqttError, OSError, WebhookError) as exc:
                summary.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            else:
                summary.sent[message.note] += 1
                summary.readings += message.readings if message.note != "duplicate" else 0
            finally:
                slots.release()
                on_progress(1)

        begun = time.monotonic()
        for message, offset in zip(messages, offsets, strict=True):
            delay = begun + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(deliver(message))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    summary.finished = time.monotonic()
    return summary


class WebhookError(Exception):
    pass


def _post(target: Target, payload: bytes) -> None:
    if target.webhook_url is None or target.webhook_secret is None:
        raise WebhookError(
            "this scenario posts to the webhook: give --webhook-url and --webhook-secret"
        )
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's)
        target.webhook_url,
        data=payload,
        method="POST",
        headers={
            "Authorization": f"Bearer {target.webhook_secret}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
            reply.read()
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"HTTP {exc.code}") from None
