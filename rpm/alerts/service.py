"""Alert actions as one step each: lock the alert, apply the pure lifecycle, write the new
state and its event, in the caller's connection and one transaction.

Shared by the worklist API and SMS replies, so that both refuse and record alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rpm.alerts import repository
from rpm.alerts.lifecycle import Actor, Assign, Command, Status, apply
from rpm.alerts.repository import AlertRecord, Connection
from rpm.care_teams import registry as care_teams
from rpm.care_teams.registry import CareTeamError


async def act(conn: Connection, alert_id: int, command: Command, actor: Actor) -> AlertRecord:
    """Apply a nurse's command; raises `InvalidTransition` (409) or `AlertNotFound`."""
    async with conn.transaction():
        state = await repository.lock_state(conn, alert_id)
        if isinstance(command, Assign):
            await _check_assignee(conn, alert_id, command.staff_id)
        new, event = apply(state, command, actor, datetime.now(UTC))
        # Once somebody has acknowledged it, nothing more escalates.
        escalate_at = repository.KEEP if new.status is Status.OPEN else None
        await repository.save_transition(conn, new, event, actor.name, escalate_at)
    return await repository.get(conn, alert_id)


async def _check_assignee(conn: Connection, alert_id: int, staff_id: int) -> None:
    """An alert goes to an active member of its patient's care team (any staff member
    while the patient has no team)."""
    member = await care_teams.staff_member(conn, staff_id)
    if not member.active:
        raise CareTeamError(f"staff member {staff_id} is inactive")
    team_id = await repository.care_team_of(conn, alert_id)
    if team_id is not None and not await care_teams.is_member(conn, team_id, staff_id):
        raise CareTeamError(f"staff member {staff_id} is not in care team {team_id}, the patient's")
