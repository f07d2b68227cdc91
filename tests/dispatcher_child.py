"""An SMS dispatcher in a process of its own, for the tests that kill it with SIGKILL.

    python -m tests.dispatcher_child <database_url> <twilio_base_url> [--name N] [--pool-size K]

It runs `Dispatcher.run` (poll, claim, send through the real twilio SDK, record, reconcile
now and then) against the fake Twilio at `twilio_base_url` until it is killed. Its
database sessions carry `application_name=<name>`, so that a test can see it is up, and
its status callback URLs carry its name, so that a test can tell who sent what.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from rpm.alerts.dispatcher import Dispatcher
from rpm.alerts.notifier import policy_of
from rpm.alerts.twilio_sms import TwilioSms
from rpm.config import AlertsSettings, TwilioSettings
from tests.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

SENDER_PHONE = "+15555550100"


def dispatcher(
    pool: AsyncConnectionPool,
    twilio_base_url: str,
    name: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Dispatcher:
    """A dispatcher wired as the service wires it, to the fake Twilio, polling often."""
    twilio = TwilioSettings(  # type: ignore[call-arg]
        account_sid=DEFAULT_ACCOUNT_SID,
        auth_token=SecretStr(DEFAULT_AUTH_TOKEN),
        from_number=SENDER_PHONE,
        api_base_url=twilio_base_url,
        timeout_s=5,
    )
    alerts = AlertsSettings(public_url=f"http://{name}.test", dispatch_poll_s=0.05)  # type: ignore[call-arg]
    return Dispatcher(pool, TwilioSms(twilio), alerts, policy_of(alerts), clock)


async def main(database_url: str, twilio_base_url: str, name: str, pool_size: int) -> None:
    async with AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=pool_size,
        kwargs={"application_name": name},
        open=False,
    ) as pool:
        await dispatcher(pool, twilio_base_url, name).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("twilio_base_url")
    parser.add_argument("--name", default="dispatcher")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=4,
        help="database connections; with 1, each send waits for the one before it",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.database_url, args.twilio_base_url, args.name, args.pool_size))
