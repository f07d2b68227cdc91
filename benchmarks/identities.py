"""Device identities benchmark: how soon the broker acts on rpm's identity changes.

    python -m benchmarks.identities [--devices 100]      (or: make bench-identities)

Against deploy/mosquitto/ run here (the real Mosquitto with its dynamic security plugin,
its entrypoint making the accounts), through `rpm.devices.broker_identities` as the
service uses it, one change at a time: prints the p50/p99/max time

- to make a device's identity (connect as the admin, send, the plugin's answer);
- from asking for a rotation to a device connected with the old secret being
  disconnected, and from asking for a revocation (a deactivation) to the same.

The API adds its own transaction around each change (docs/device-contract.md#credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiomqtt

from rpm.config import BrokerAddress
from rpm.devices.broker_identities import BrokerIdentities
from tests.support import deploy_broker

ADMIN_PW = "bench-admin-pw"
T = TypeVar("T")


def _summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"{name:<28} p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms"
        f"  max {ms[-1]:6.1f} ms  (n={len(ms)})"
    )


async def _until_dropped(
    port: int, serial: str, secret: str, change: Callable[[], Awaitable[T]]
) -> tuple[float, T]:
    """How long from asking for `change` to the device's connection ending; its result."""
    async with aiomqtt.Client(
        "127.0.0.1", port, username=serial, password=secret, identifier=serial
    ) as device:
        # aiomqtt resolves this future when the connection ends (its own, private).
        dropped = device._disconnected
        started = time.perf_counter()
        result = await change()
        with contextlib.suppress(aiomqtt.MqttError):
            await asyncio.wait_for(asyncio.shield(dropped), timeout=5)
        elapsed = time.perf_counter() - started
        if not dropped.done():
            raise SystemExit(f"device {serial} was still connected 5 s after the change")
        return elapsed, result


async def run(port: int, devices: int) -> None:
    admin = BrokerIdentities(BrokerAddress("127.0.0.1", port, "rpm-admin", ADMIN_PW))
    created, rotated, revoked = [], [], []
    for n in range(devices):
        serial = f"BENCH-{n:05d}"
        started = time.perf_counter()
        secret = await admin.create(serial)
        created.append(time.perf_counter() - started)
        elapsed, secret = await _until_dropped(
            port, serial, secret, lambda serial=serial: admin.rotate(serial)
        )
        rotated.append(elapsed)
        elapsed, _ = await _until_dropped(
            port, serial, secret, lambda serial=serial: admin.revoke(serial)
        )
        revoked.append(elapsed)
    print(_summary("create identity", created))
    print(_summary("rotate -> old one dropped", rotated))
    print(_summary("revoke -> device dropped", revoked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rpm-bench-identities-") as workdir:
        broker = deploy_broker(Path(workdir), "bench-ingest-pw", ADMIN_PW)
        broker.start()
        try:
            asyncio.run(run(broker.port, args.devices))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
