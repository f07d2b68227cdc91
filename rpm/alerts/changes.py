"""Alerts changing, as they change: PostgreSQL's NOTIFY fanned out to the worklist pages
open in this process.

Migration 0009's triggers NOTIFY `alert_changed` whenever an alert is written (by any
process: the rule engine, a nurse, escalation, the SMS dispatcher), naming the care teams
concerned. Each process LISTENs on one connection of its own and wakes the subscribers
whose teams are among them; a subscriber (a page's event stream) then only says "look
again", and the page reads the worklist as it would anyway, audited. A notification
carries team ids, never patient data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from enum import Enum

import psycopg

from rpm.backoff import Backoff
from rpm.config import DatabaseSettings
from rpm.db.store import dedicated_connection
from rpm.logs import first_line

logger = logging.getLogger(__name__)

CHANNEL = "alert_changed"
# The payload for more teams than a notification lists.
EVERY_TEAM = "*"


def teams_in(payload: str) -> frozenset[int] | None:
    """The care teams a notification names; None: any team might be concerned (it says
    so, or it is not ours to read)."""
    if payload == EVERY_TEAM:
        return None
    try:
        return frozenset(int(team) for team in payload.split(",") if team)
    except ValueError:
        return None


def concerns(changed: frozenset[int] | None, visible: frozenset[int] | None) -> bool:
    """Whether a change to these teams' alerts (None: any team's) is one that a user
    seeing these teams (None: every team, an admin) should look at."""
    return changed is None or visible is None or not changed.isdisjoint(visible)


class Wake(Enum):
    CHANGED = "changed"
    # Nothing changed within the wait.
    QUIET = "quiet"
    # The process is stopping: the subscriber should end.
    CLOSED = "closed"


class Subscription:
    """One page's interest: woken by changes to its teams' alerts. Changes that come
    while it is not waiting are kept as one: it looks once, however many there were."""

    def __init__(self, teams: frozenset[int] | None) -> None:
        self.teams = teams
        self._changed = asyncio.Event()
        self._closed = False

    async def next(self, timeout_s: float) -> Wake:
        if not self._closed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                return Wake.QUIET
        if self._closed:
            return Wake.CLOSED
        self._changed.clear()
        return Wake.CHANGED

    def _wake(self) -> None:
        self._changed.set()

    def _close(self) -> None:
        self._closed = True
        self._changed.set()


class AlertChanges:
    """The process's listener and its subscribers (`run` is a long-lived task)."""

    def __init__(self, database_url: str, settings: DatabaseSettings) -> None:
        self._database_url = database_url
        self._settings = settings
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        # Whether a change now would be heard.
        self.listening = False

    @contextmanager
    def subscribe(self, teams: Collection[int] | None) -> Iterator[Subscription]:
        """Changes to these teams' alerts (None: every team's) until the block ends."""
        subscription = Subscription(None if teams is None else frozenset(teams))
        if self._closed:
            subscription._close()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every subscription, now and to come: the server is stopping, and it waits
        for open responses (an event stream never ends by itself) before it stops."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription._close()

    def publish(self, teams: frozenset[int] | None) -> None:
        for subscription in self._subscriptions:
            if concerns(teams, subscription.teams):
                subscription._wake()

    async def run(self) -> None:
        """LISTEN until cancelled, reconnecting with backoff. Each (re)connection wakes
        every subscriber: what changed while nobody listened is not lost, only unnamed."""
        backoff = Backoff()
        while True:
            try:
                async with await dedicated_connection(self._database_url, self._settings) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    backoff.reset()
                    self.publish(None)
                    async for notification in conn.notifies():
                        self.publish(teams_in(notification.payload))
            # Any database error: live updates stop for a while, never the service.
            except psycopg.Error as exc:
                self.listening = False
                delay = backoff.next_delay()
                logger.warning(
                    "alert changes: no listening connection (%s); retrying in %.0f s",
                    first_line(exc),
                    delay,
                )
                await asyncio.sleep(delay)
