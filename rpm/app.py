"""The one place that wires the service: FastAPI app, store, MQTT consumer, scheduler.

Everything long-lived starts in the lifespan and stops with it. The database and the
broker are each reached through a retry loop, so the HTTP server (and `/healthz`) is up
at once while `/readyz` says what is still missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import Depends, FastAPI
from psycopg_pool import AsyncConnectionPool

import rpm
from rpm.alerts.changes import AlertChanges
from rpm.alerts.dispatcher import Dispatcher
from rpm.alerts.escalation import Escalator
from rpm.alerts.notifier import Notifier, policy_of
from rpm.alerts.routing import Policy
from rpm.alerts.twilio_sms import TwilioSms
from rpm.api import alerts as alerts_api
from rpm.api import audit as audit_api
from rpm.api import auth as auth_api
from rpm.api import care_plans as care_plans_api
from rpm.api import care_teams as care_teams_api
from rpm.api import dead_letters as dead_letters_api
from rpm.api import devices as devices_api
from rpm.api import ehr as ehr_api
from rpm.api import fhir as fhir_api
from rpm.api import fhir_bulk as fhir_bulk_api
from rpm.api import handoff as handoff_api
from rpm.api import health as health_api
from rpm.api import patients as patients_api
from rpm.api import program as program_api
from rpm.api import readings as readings_api
from rpm.api import twilio as twilio_api
from rpm.api import users as users_api
from rpm.api import webhooks as webhooks_api
from rpm.api.deps import install_error_handlers, refuse_nul
from rpm.backoff import Backoff
from rpm.config import BrokerAddress, Settings
from rpm.db.migrate import MigrationError
from rpm.db.store import make_pool, prepare_schema
from rpm.db.timescale import TimescaleUnavailable
from rpm.devices import broker_identities
from rpm.ehr.handoff import EhrHandoff
from rpm.ehr.pusher import EhrPusher
from rpm.fhir.exporter import BulkExporter
from rpm.health import Health
from rpm.ingest.consumer import ConsumerOptions, MqttConsumer
from rpm.ingest.service import IngestService, chain
from rpm.logs import first_line
from rpm.program.reminders import AdherenceReminders
from rpm.rules.care_plans import PlanCache
from rpm.rules.engine import RuleEngine
from rpm.rules.handoff import RulesHandoff
from rpm.web import care_plans as care_plans_ui
from rpm.web import dead_letters as dead_letters_ui
from rpm.web import deps as web
from rpm.web import devices as devices_ui
from rpm.web import enrolment as enrolment_ui
from rpm.web import huddle as huddle_ui
from rpm.web import patients as patients_ui
from rpm.web import program as program_ui
from rpm.web import settings as settings_ui
from rpm.web import sign_in as sign_in_ui
from rpm.web import teams as teams_ui
from rpm.web import worklist as worklist_ui

logger = logging.getLogger(__name__)

DATABASE_PROBE_INTERVAL_S = 5
# Below the 10 s that docker waits between SIGTERM and SIGKILL (Kubernetes: 30 s), so that
# a consumer still busy is cancelled, and disconnects cleanly, rather than killed.
CONSUMER_STOP_GRACE_S = 8


@dataclass(frozen=True)
class Wiring:
    """What `rpm up` resolved before the app starts: real or embedded endpoints."""

    settings: Settings
    database_url: str
    broker: BrokerAddress
    broker_is_embedded: bool
    # Called when the service cannot go on (a broken migration, say): stops the server.
    on_fatal: Callable[[str], None]
    health: Health = field(default_factory=Health)
    # Called once start-up has loaded what lives as long as the process (the rule engine's
    # plans), before consuming starts: `rpm up` tunes the garbage collector there.
    on_warm: Callable[[], None] | None = None


def create_app(wiring: Wiring) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = wiring.settings
        pool = make_pool(wiring.database_url, settings.database)
        app.state.pool = pool
        app.state.health = wiring.health
        app.state.settings = settings
        app.state.identities = broker_identities.from_settings(settings.mqtt)

        policy = policy_of(settings.alerts)
        dispatcher = _dispatcher(pool, settings, policy)
        wake_dispatcher = dispatcher.wake if dispatcher else lambda: None
        notifier = Notifier(policy, wake_dispatcher)
        escalator = Escalator(pool, policy, wake_dispatcher)
        reminders = AdherenceReminders(pool, settings.adherence, wake_dispatcher)
        # One cache of parsed plans for the engine and the reads that show plans' limits.
        plans = PlanCache()
        app.state.plans = plans
        rules = RuleEngine(
            pool,
            notifier=notifier,
            request_text=settings.rules.confirm_request_template,
            plans=plans,
        )
        app.state.rules = rules
        changes = AlertChanges(wiring.database_url, settings.database)
        app.state.alert_changes = changes
        ehr_pusher = EhrPusher(pool, settings.ehr, settings.alerts.public_url)
        app.state.ehr_pusher = ehr_pusher
        bulk_exporter = BulkExporter(pool, settings.bulk)
        app.state.bulk_exporter = bulk_exporter
        ingest = IngestService(
            pool,
            settings.ingest.time_limits(),
            handoff=chain(RulesHandoff(rules), EhrHandoff(ehr_pusher.wake)),
        )
        app.state.ingest = ingest
        consumer = MqttConsumer(
            wiring.broker,
            ConsumerOptions(
                client_id=settings.mqtt.client_id,
                keepalive_s=settings.mqtt.keepalive_s,
                shared_group=None
                if wiring.broker_is_embedded
                else settings.mqtt.shared_group or None,
                # The embedded broker (amqtt) speaks MQTT 3.1.1 only.
                protocol=aiomqtt.ProtocolVersion.V311
                if wiring.broker_is_embedded
                else aiomqtt.ProtocolVersion.V5,
                batch_size=settings.ingest.batch_size,
                session_expiry_s=settings.mqtt.session_expiry_s,
                leave_on_stop=settings.mqtt.leave_on_stop,
            ),
            ingest,
            wiring.health,
        )
        scheduler = AsyncIOScheduler(timezone=UTC)
        tasks: list[asyncio.Task[None]] = []
        consuming: list[asyncio.Task[None]] = []

        async def start() -> None:
            await _open_store(wiring, pool, scheduler)
            if pool.closed:
                return
            _schedule_rules(scheduler, rules, settings)
            # Safe in every process at once: it locks the alerts due with SKIP LOCKED.
            scheduler.add_job(
                escalator.run,
                "interval",
                seconds=settings.alerts.escalation_check_interval_s,
                id="alert-escalation",
                max_instances=1,
                coalesce=True,
            )
            # Safe in every process at once: one scans at a time (an advisory lock).
            scheduler.add_job(
                reminders.run,
                "interval",
                seconds=settings.adherence.reminder_check_interval_s,
                id="adherence-reminders",
                max_instances=1,
                coalesce=True,
            )
            try:
                await rules.warm()
            except psycopg.Error as exc:  # only a head start: plans are parsed on demand too
                logger.warning("could not warm the rule engine: %s", first_line(exc))
            if wiring.on_warm is not None:
                wiring.on_warm()
            if dispatcher is not None:
                tasks.append(_supervised(dispatcher.run(), "sms-dispatcher", wiring.on_fatal))
            tasks.append(_supervised(changes.run(), "alert-changes", wiring.on_fatal))
            # Safe in every process at once: it claims the rows due with SKIP LOCKED.
            tasks.append(_supervised(ehr_pusher.run(), "ehr-pusher", wiring.on_fatal))
            if settings.bulk.run_exports:
                # Safe in every process at once: it claims a job with SKIP LOCKED.
                tasks.append(_supervised(bulk_exporter.run(), "bulk-exporter", wiring.on_fatal))
            # Consume only once the store can take what arrives.
            consuming.append(_supervised(consumer.run(), "mqtt-consumer", wiring.on_fatal))
            tasks.extend(consuming)

        tasks.append(_supervised(start(), "store", wiring.on_fatal))
        scheduler.start()
        try:
            yield
        finally:
            changes.close()
            scheduler.shutdown(wait=False)
            # A clean stop lets the consumer finish the batch it holds (or leave its group);
            # past the grace period it is cancelled, which is safe: what it has not
            # acknowledged stays with the broker.
            consumer.stop()
            if consuming:
                await asyncio.wait(consuming, timeout=CONSUMER_STOP_GRACE_S)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()
            logger.info("stopped")

    app = FastAPI(
        title="rpm",
        version=rpm.__version__,
        summary="Remote patient monitoring: device readings, care-plan rules and alerts.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul)],
    )
    install_error_handlers(app)
    for api in (
        health_api,
        auth_api,
        users_api,
        audit_api,
        devices_api,
        patients_api,
        readings_api,
        program_api,
        # Before fhir_api: its last route answers every other /fhir path.
        fhir_bulk_api,
        fhir_api,
        ehr_api,
        care_plans_api,
        care_teams_api,
        handoff_api,
        alerts_api,
        dead_letters_api,
        webhooks_api,
        twilio_api,
        sign_in_ui,
        settings_ui,
        worklist_ui,
        # Before the patients' pages: /ui/patients/new is not a patient's id.
        enrolment_ui,
        patients_ui,
        program_ui,
        huddle_ui,
        care_plans_ui,
        devices_ui,
        teams_ui,
        dead_letters_ui,
    ):
        app.include_router(api.router)
    web.install(app)
    return app


def end_live_streams(app: FastAPI) -> None:
    """End the app's open event streams (the worklist pages' live updates) and refuse new
    ones. For the server to call as it starts to stop: uvicorn waits for open responses
    before it stops the app, and an event stream never ends by itself."""
    changes: AlertChanges | None = getattr(app.state, "alert_changes", None)
    if changes is not None:
        changes.close()


def _supervised(
    coroutine: Coroutine[Any, Any, None], name: str, on_fatal: Callable[[str], None]
) -> asyncio.Task[None]:
    """Run a long-lived task; if it dies of anything but cancellation, stop the service."""
    task = asyncio.create_task(coroutine, name=name)

    def _done(finished: asyncio.Task[None]) -> None:
        if not finished.cancelled() and finished.exception() is not None:
            logger.critical("task %s failed", name, exc_info=finished.exception())
            on_fatal(f"task {name} failed: {finished.exception()}")

    task.add_done_callback(_done)
    return task


async def _open_store(
    wiring: Wiring, pool: AsyncConnectionPool, scheduler: AsyncIOScheduler
) -> None:
    """Wait for the database, migrate it, open the pool, then probe it on a schedule."""
    backoff = Backoff()
    while True:
        try:
            report = await prepare_schema(wiring.database_url, wiring.settings.database)
            break
        except psycopg.OperationalError as exc:
            delay = backoff.next_delay()
            wiring.health.set("database", False, f"{first_line(exc)}; retrying in {delay:.0f} s")
            await asyncio.sleep(delay)
        except (MigrationError, TimescaleUnavailable, psycopg.Error) as exc:
            # Not a connection problem: retrying would not help and would hide it.
            logger.critical("cannot prepare the database: %s", exc)
            wiring.on_fatal(f"cannot prepare the database: {exc}")
            return
    logger.info(
        "database schema ready (%s; %s)",
        f"applied {', '.join(report.applied)}" if report.applied else "up to date",
        "TimescaleDB" if report.timescale else "plain PostgreSQL",
    )
    await pool.open(wait=False)
    await _probe_database(pool, wiring.health)
    scheduler.add_job(
        _probe_database,
        "interval",
        seconds=DATABASE_PROBE_INTERVAL_S,
        args=[pool, wiring.health],
        id="probe-database",
        max_instances=1,
        coalesce=True,
    )


def _dispatcher(pool: AsyncConnectionPool, settings: Settings, policy: Policy) -> Dispatcher | None:
    """The SMS dispatcher, when Twilio is configured; else SMS wait in the outbox."""
    twilio = settings.twilio
    if not twilio.account_sid:
        logger.warning(
            "RPM_TWILIO_ACCOUNT_SID is not set: no SMS is sent (they wait in the outbox)"
        )
        return None
    return Dispatcher(pool, TwilioSms(twilio, settings.alerts.sms_senders), settings.alerts, policy)


def _schedule_rules(scheduler: AsyncIOScheduler, rules: RuleEngine, settings: Settings) -> None:
    """The rule engine's periodic jobs. Each is safe with several processes running it:
    the missed-readings check under an advisory lock, the held-findings check and the
    sweeper by SKIP LOCKED."""
    scheduler.add_job(
        rules.check_missed,
        "interval",
        seconds=settings.rules.missed_check_interval_s,
        id="missed-readings",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(
        rules.check_confirmations,
        "interval",
        seconds=settings.rules.confirm_check_interval_s,
        id="held-findings",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        rules.sweep,
        "interval",
        seconds=settings.rules.sweep_interval_s,
        args=[settings.rules.sweep_after_s],
        id="rules-sweeper",
        max_instances=1,
        coalesce=True,
    )


async def _probe_database(pool: AsyncConnectionPool, health: Health) -> None:
    try:
        async with pool.connection(timeout=DATABASE_PROBE_INTERVAL_S) as conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, TimeoutError) as exc:
        health.set("database", False, first_line(exc))
    else:
        health.set("database", True)
