"""The fan-out of alert changes to open pages, without a database: whose page a
notification concerns, changes kept as one while nobody waits, and every page ended when
the process stops."""

from __future__ import annotations

import asyncio

import pytest

from rpm.alerts.changes import AlertChanges, Wake, concerns, teams_in
from rpm.config import DatabaseSettings


def test_a_notification_names_teams_or_any() -> None:
    assert teams_in("3,7") == frozenset({3, 7})
    assert teams_in("") == frozenset()  # patients without a team: admins only
    assert teams_in("*") is None
    assert teams_in("not ours") is None


@pytest.mark.parametrize(
    ("changed", "visible", "concerned"),
    [
        (frozenset({3}), frozenset({3, 4}), True),
        (frozenset({5}), frozenset({3, 4}), False),
        (frozenset(), frozenset({3}), False),
        (frozenset(), None, True),  # an admin sees every team, and the team-less
        (None, frozenset({3}), True),  # too many teams to name: everyone looks
    ],
)
def test_a_change_concerns_those_who_see_its_teams(
    changed: frozenset[int] | None, visible: frozenset[int] | None, concerned: bool
) -> None:
    assert concerns(changed, visible) is concerned


async def test_changes_reach_the_pages_of_their_teams_once_however_many() -> None:
    changes = AlertChanges("postgresql://unused", DatabaseSettings())
    with changes.subscribe({3}) as nurse, changes.subscribe(None) as admin:
        assert await nurse.next(0.01) is Wake.QUIET
        for _ in range(5):
            changes.publish(frozenset({3}))
        changes.publish(frozenset({9}))
        assert await nurse.next(0.01) is Wake.CHANGED
        assert await nurse.next(0.01) is Wake.QUIET  # the five were one
        assert await admin.next(0.01) is Wake.CHANGED

        waiting = asyncio.create_task(nurse.next(5))
        await asyncio.sleep(0)
        changes.publish(None)
        assert await waiting is Wake.CHANGED


async def test_stopping_ends_every_page_and_any_that_comes_after() -> None:
    changes = AlertChanges("postgresql://unused", DatabaseSettings())
    with changes.subscribe({3}) as page:
        waiting = asyncio.create_task(page.next(60))
        await asyncio.sleep(0)
        changes.close()
        assert await asyncio.wait_for(waiting, 1) is Wake.CLOSED
    with changes.subscribe({3}) as late:
        assert await late.next(60) is Wake.CLOSED
