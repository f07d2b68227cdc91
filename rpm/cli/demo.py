"""Demo mode of `rpm up`: the `demo` scenario's patients, plans and devices, and two weeks
of their readings played in under a minute, so that a newcomer sees alerts appear.

Only on the embedded database (never into a configured one), and only once: a restart
finds the demo patients there and leaves them be. The simulator runs as its own process
and talks to rpm over HTTP and MQTT only, like any device.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import psycopg
from psycopg_pool import AsyncConnectionPool

from rpm.config import BrokerAddress
from rpm.health import Health
from rpm.rules.engine import RuleEngine

logger = logging.getLogger("rpm.demo")

SCENARIO = "demo"
PATIENT_PREFIX = "DEMO-"


async def play_demo(
    health: Health, database_url: str, api_url: str, broker: BrokerAddress, seconds: float
) -> None:
    # Health is a plain flag set by the app's tasks; polling it until ready costs nothing.
    while not health.ready:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM patient WHERE starts_with(external_ref, %s)", [PATIENT_PREFIX]
        )
        row = await cursor.fetchone()
    if row and row[0]:
        logger.info("demo: its patients are already here; their alerts: %s/api/v1/alerts", api_url)
        return
    logger.info(
        "demo: enrolling the demo patients and playing 14 days of their readings in %.0f s",
        seconds,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "run", SCENARIO,
        "--api-url", api_url,
        "--mqtt-url", f"mqtt://{broker.host}:{broker.port}",
        "--duration", str(seconds),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        output, errors = await process.communicate()
    except asyncio.CancelledError:
        process.terminate()
        await process.wait()
        raise
    if process.returncode != 0:
        logger.warning("demo: the simulator failed: %s", errors.decode(errors="replace")[-500:])
        return
    # The scheduler checks for missed readings every few minutes; the history just arrived.
    await _settled(database_url)
    async with AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False) as pool:
        await RuleEngine(pool).check_missed()
    logger.info(
        "demo: %s. Open alerts, most severe first: %s/api/v1/alerts; a patient's care plan:"
        " %s/api/v1/patients/1/care-plan (the API is open: sign-in comes with the web UI)",
        output.decode().strip().splitlines()[0] if output else "done",
        api_url,
        api_url,
    )


async def _settled(database_url: str, timeout_s: float = 60) -> None:
    """Until what the simulator sent is stored and evaluated: nothing new for a second."""
    last = None
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(int(timeout_s)):
            cursor = await conn.execute(
                "SELECT (SELECT count(*) FROM reading), (SELECT count(*) FROM rejected_message),"
                " (SELECT count(*) FROM rule_evaluation_queue)"
            )
            now = await cursor.fetchone()
            if now == last and now is not None and now[2] == 0:
                return
            last = now
            await asyncio.sleep(1)
