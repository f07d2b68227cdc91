"""The SMS outbox under SIGKILL and under concurrency: no notification is texted twice.

A dispatcher runs in a child process (tests/dispatcher_child.py: `Dispatcher.run` with the
real twilio SDK) against this test's database and a fake Twilio in the test's process,
and is killed with SIGKILL at the moments that matter: its claim committed but the
request not at Twilio yet; Twilio's acceptance not committed yet; everything committed.
A fresh dispatcher, its clock past RECONCILE_AFTER, then settles the outbox (reconcile,
dispatch). Then the same at random moments, with restarted processes reconciling the
dead ones' rows themselves; then four dispatcher processes sharing one outbox.

Each notification goes to a nurse of its own, so that no rate limit makes a digest of
them: one notification, one SMS. The fake's record is the judge: each message's status
callback URL names the notification it was sent for, and exactly one may name each.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from rpm.alerts.dispatcher import RECONCILE_AFTER
from tests import dispatcher_child
from tests.fake_twilio import FakeTwilio, SentMessage
from tests.support import ROOT

# Twilio holds each answer this long in the randomized test, so that a kill lands with
# sends in flight on both sides of Twilio.
SLOW_ANSWER_S = 0.05


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


class DispatcherProcess:
    """`python -m tests.dispatcher_child` for this database and fake Twilio."""

    def __init__(
        self, db_url: str, twilio: FakeTwilio, workdir: Path, name: str, pool_size: int
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
        env["PYTHONPATH"] = str(ROOT)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.dispatcher_child", db_url, twilio.base_url,
                 "--name", name, "--pool-size", str(pool_size)],
                cwd=workdir,  # no .env of the repository is read
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def spawn(
    db_url: str, twilio: FakeTwilio, tmp_path: Path
) -> Iterator[Callable[..., DispatcherProcess]]:
    started: list[DispatcherProcess] = []

    def spawn(name: str, pool_size: int = 4) -> DispatcherProcess:
        started.append(DispatcherProcess(db_url, twilio, tmp_path, name, pool_size))
        return started[-1]

    yield spawn
    for process in started:
        process.kill()
        print(f"--- {process.name}:\n{process.log()}")  # shown when the test fails


def _seed_outbox(db_url: str, count: int, due_every: timedelta = timedelta(0)) -> dict[int, str]:
    """`count` open critical alerts, each with a pending SMS to a nurse of its own, due one
    after another `due_every` apart from now; notification id -> phone."""
    start = datetime.now(UTC)
    phones: dict[int, str] = {}
    with psycopg.connect(db_url) as conn:
        patient = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name) VALUES ('P-9', 'T', 'P')"
            " RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO care_plan_version (patient_id, version, document, author, reason)"
            " VALUES (%s, 1, '{}', 'cm', 'test')",
            [patient],
        )
        for i in range(count):
            phone = f"+1555{5600000 + i}"
            staff = conn.execute(
                "INSERT INTO staff (username, display_name, role, phone)"
                " VALUES (%s, 'N', 'nurse', %s) RETURNING id",
                [f"nurse-{i}", phone],
            ).fetchone()[0]  # type: ignore[index]
            alert = conn.execute(
                "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
                " latest_message, first_triggered_at, last_triggered_at)"
                " VALUES (%s, %s, 1, 'critical', 'm', 'm', now(), now()) RETURNING id",
                [patient, f"rule_{i}"],
            ).fetchone()[0]  # type: ignore[index]
            due = start + i * due_every
            notification = conn.execute(
                "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
                " not_before, expires_at) VALUES (%s, %s, %s, 'opened', 'critical', 1, %s, %s)"
                " RETURNING id",
                [alert, staff, phone, due, due + timedelta(minutes=30)],
            ).fetchone()[0]  # type: ignore[index]
            phones[notification] = phone
    return phones


def _outbox(db_url: str) -> list[tuple[int, str, str | None, bool]]:
    """Each notification's id, status, Twilio sid, and whether its text was written."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT id, status, twilio_sid, body IS NOT NULL FROM notification ORDER BY id"
        ).fetchall()


def _where_each_is(db_url: str, twilio: FakeTwilio) -> dict[str, int]:
    """What a kill left behind, counted per notification: `sent` (recorded), `at Twilio`
    (accepted there, not recorded), `text kept` (claimed and its text written, not at
    Twilio), `claimed` (not even its text written), `pending`."""
    texted = {_notification_of(m) for m in twilio.messages}
    where: Counter[str] = Counter()
    for id_, status, _, has_body in _outbox(db_url):
        if status != "sending":
            where[status] += 1
        elif id_ in texted:
            where["at Twilio"] += 1
        else:
            where["text kept" if has_body else "claimed"] += 1
    return dict(sorted(where.items()))


def _all_sent(db_url: str) -> bool:
    return all(status == "sent" for _, status, _, _ in _outbox(db_url))


def _texted_or_all_sent(db_url: str, twilio: FakeTwilio, count: int) -> bool:
    """Twilio has `count` SMS, or there is nothing left to send (some of those it was
    expected to send had reached Twilio after all)."""
    return len(twilio.messages) >= count or _all_sent(db_url)


def _let_reconcile_after_pass(db_url: str) -> None:
    """Move the claims left `sending` back past RECONCILE_AFTER, as if that long had passed
    since them: the next dispatcher started reconciles them at once, as after a real
    restart. Twilio's window for finding the messages only widens (`find_sent`)."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE notification SET claimed_at = claimed_at - %s WHERE status = 'sending'",
            [RECONCILE_AFTER + timedelta(minutes=1)],
        )


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def _notification_of(message: SentMessage) -> int:
    assert message.status_callback is not None
    return int(parse_qs(urlsplit(message.status_callback).query)["notification"][0])


def _sender_of(message: SentMessage) -> str:
    """The dispatcher that sent it: its name is the host of its public URL."""
    assert message.status_callback is not None
    return urlsplit(message.status_callback).hostname or ""


async def _settle(db_url: str, twilio: FakeTwilio) -> None:
    """A fresh dispatcher, its clock past RECONCILE_AFTER: it reconciles what the dead one
    left `sending`, then sends what is pending, until there is nothing left to do."""
    later = datetime.now(UTC) + RECONCILE_AFTER + timedelta(minutes=1)
    async with AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False) as pool:
        dispatcher = dispatcher_child.dispatcher(pool, twilio.base_url, "settler", lambda: later)
        while await dispatcher.reconcile() + await dispatcher.dispatch_once():
            pass


def _assert_each_sent_once(
    db_url: str, twilio: FakeTwilio, phones: dict[int, str], story: str
) -> None:
    """Every notification `sent` with the sid of the one SMS Twilio has for it."""
    outbox = _outbox(db_url)
    messages = twilio.messages
    per_notification = Counter(_notification_of(m) for m in messages)
    duplicates = sum(n - 1 for n in per_notification.values())
    unsent = [(id_, status) for id_, status, sid, _ in outbox if status != "sent" or sid is None]
    assert (duplicates, unsent) == (0, []), (
        f"{duplicates} duplicate SMS and {len(unsent)} notification(s) not sent"
        f" ({unsent}) after {story}; senders {Counter(_sender_of(m) for m in messages)}"
    )
    assert sorted(m.to for m in messages) == sorted(phones.values())
    assert {m.sid for m in messages} == {sid for _, _, sid, _ in outbox}


@dataclass(frozen=True)
class KillMoment:
    """Where the dispatcher dies. Both of its sends are held at the same point (it holds
    no connection while Twilio answers, so they run side by side); a row claimed whose
    text is not yet written is left to the random kills below."""

    arm: Callable[[FakeTwilio], object]  # what the fake does with the first request
    reached: Callable[[str, FakeTwilio], object]  # returns at the moment
    left: dict[str, int]  # where the two notifications are then (_where_each_is)


KILL_MOMENTS = {
    "claimed-not-yet-at-twilio": KillMoment(
        arm=lambda twilio: twilio.hold_next(times=2),
        reached=lambda db_url, twilio: twilio.wait_for_held(2),
        left={"text kept": 2},
    ),
    "accepted-by-twilio-not-recorded": KillMoment(
        arm=lambda twilio: twilio.delay_next(60, times=2),
        reached=lambda db_url, twilio: twilio.wait_for(2),
        left={"at Twilio": 2},
    ),
    "recorded-as-sent": KillMoment(
        arm=lambda twilio: None,
        reached=lambda db_url, twilio: _wait_until(lambda: _all_sent(db_url), "both are sent"),
        left={"sent": 2},
    ),
}


@pytest.mark.parametrize("moment", KILL_MOMENTS)
def test_a_dispatcher_killed_around_the_send_texts_each_notification_once(
    moment: str,
    db_url: str,
    twilio: FakeTwilio,
    spawn: Callable[..., DispatcherProcess],
) -> None:
    kill_at = KILL_MOMENTS[moment]
    phones = _seed_outbox(db_url, 2)
    kill_at.arm(twilio)
    doomed = spawn("doomed")
    kill_at.reached(db_url, twilio)
    doomed.kill()
    assert _where_each_is(db_url, twilio) == kill_at.left

    asyncio.run(_settle(db_url, twilio))
    _assert_each_sent_once(db_url, twilio, phones, f"a kill with {moment}")


def test_a_dispatcher_killed_at_random_moments_texts_each_notification_once(
    db_url: str, twilio: FakeTwilio, spawn: Callable[..., DispatcherProcess]
) -> None:
    """Killed and restarted a few times, each restart reconciling the dead one's rows
    itself (as a restarted service does), then settled."""
    seed, kills, count = 20240611, 4, 30
    rng = random.Random(seed)
    phones = _seed_outbox(db_url, count)
    slow = threading.Event()
    slow.set()

    def answer_slowly(_: SentMessage) -> None:
        if slow.is_set():
            time.sleep(SLOW_ANSWER_S)

    twilio.on_message(answer_slowly)
    left: list[dict[str, int]] = []
    for n in range(kills):
        texted = {_notification_of(m) for m in twilio.messages}
        if len(texted) == count:
            break
        target = len(twilio.messages) + rng.randint(1, min(4, count - len(texted)))
        doomed = spawn(f"doomed-{n}")
        # A few SMS into its round, and a little more: a moment the test does not choose.
        _wait_until(partial(_texted_or_all_sent, db_url, twilio, target), f"restart {n} sends")
        time.sleep(rng.uniform(0, 0.1))
        doomed.kill()
        time.sleep(0.1)  # a request the dead process had written still reaches Twilio
        left.append(_where_each_is(db_url, twilio))
        _let_reconcile_after_pass(db_url)
    slow.clear()
    story = f"{len(left)} kills (seed {seed}) leaving {left}"
    assert any(set(where) - {"sent"} for where in left), f"no kill caught a send: {story}"

    asyncio.run(_settle(db_url, twilio))
    _assert_each_sent_once(db_url, twilio, phones, story)


def test_several_dispatchers_at_once_text_each_notification_once(
    db_url: str, twilio: FakeTwilio, spawn: Callable[..., DispatcherProcess]
) -> None:
    names = [f"dispatcher-{n}" for n in range(1, 5)]
    dispatchers = [spawn(name) for name in names]

    def all_connected() -> bool:
        with psycopg.connect(db_url) as conn:
            cursor = conn.execute(
                "SELECT DISTINCT application_name FROM pg_stat_activity"
                " WHERE datname = current_database()"
            )
            return set(names) <= {name for (name,) in cursor.fetchall()}

    _wait_until(all_connected, "the four dispatchers are connected")
    # Due a few milliseconds apart: they race for the rows as they come due, not once.
    phones = _seed_outbox(db_url, 200, due_every=timedelta(milliseconds=5))
    twilio.wait_for(200, timeout=15)
    _wait_until(lambda: _all_sent(db_url), "all 200 are recorded as sent")
    time.sleep(0.3)  # a second SMS for any of them would be on its way by now
    for dispatcher in dispatchers:
        dispatcher.kill()

    senders = Counter(_sender_of(m) for m in twilio.messages)
    _assert_each_sent_once(db_url, twilio, phones, f"four dispatchers sending {dict(senders)}")
    assert len(senders) > 1, f"one dispatcher did all the work: {senders}"
    assert [d.name for d in dispatchers if "Traceback" in d.log()] == []
