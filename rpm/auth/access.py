"""Who may do what, as plain data: roles, permissions, the principal of a request, and the
login throttle. Pure: the adapters (`rpm.auth.repository`, `rpm.api.deps`) load and
enforce it.

Function level: each route needs one `Permission`, and `GRANTS` says which roles hold it.
Object level: nurses and care managers see the patients of their own care teams only;
admins (who enrol patients, assign devices and replay rejected messages) and
integrations (the electronic health record's feed) see every patient. Every read of
patient data is audited whoever makes it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Role(StrEnum):
    NURSE = "nurse"
    CARE_MANAGER = "care_manager"
    ADMIN = "admin"
    INTEGRATION = "integration"


class Permission(StrEnum):
    """What a route does; the value completes "you may not ..." in a refusal."""

    READ_PATIENT_DATA = "read patient data"
    ENROL_PATIENTS = "enrol patients or change their care team"
    CHANGE_CARE_PLANS = "change care plans"
    ACT_ON_ALERTS = "acknowledge, assign or resolve alerts"
    READ_CARE_TEAMS = "read care teams and on-call shifts"
    CREATE_CARE_TEAMS = "create care teams"
    MANAGE_ROTA = "add staff, or change the members and on-call shifts of a care team"
    MANAGE_DEVICES = "manage devices"
    MANAGE_DEAD_LETTERS = "read or replay rejected messages"
    MANAGE_USERS = "manage users and API keys"
    READ_AUDIT = "read the audit trail"
    LOG_TIME = "log time spent on patients"
    READ_PROGRAM_REPORTS = "read the program's time and billing reports"
    MANAGE_EHR_FEEDS = "manage the feeds of readings into EHRs"
    HAND_OFF = "write notes on patients or give their follow-up"


_CLINICAL = frozenset({Role.NURSE, Role.CARE_MANAGER})
GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.READ_PATIENT_DATA: _CLINICAL | {Role.ADMIN, Role.INTEGRATION},
    Permission.ENROL_PATIENTS: frozenset({Role.CARE_MANAGER, Role.ADMIN}),
    Permission.CHANGE_CARE_PLANS: frozenset({Role.CARE_MANAGER}),
    Permission.ACT_ON_ALERTS: _CLINICAL,
    Permission.READ_CARE_TEAMS: _CLINICAL | {Role.ADMIN},
    Permission.CREATE_CARE_TEAMS: frozenset({Role.ADMIN}),
    # A care manager runs their own teams' rota (object level: `rpm.api.care_teams`);
    # giving a staff member a sign-in stays with admins (MANAGE_USERS).
    Permission.MANAGE_ROTA: frozenset({Role.CARE_MANAGER, Role.ADMIN}),
    Permission.MANAGE_DEVICES: frozenset({Role.ADMIN}),
    Permission.MANAGE_DEAD_LETTERS: frozenset({Role.ADMIN}),
    Permission.MANAGE_USERS: frozenset({Role.ADMIN}),
    Permission.READ_AUDIT: frozenset({Role.ADMIN}),
    # Care-team members log their own time; admins have no staff record to log it as.
    Permission.LOG_TIME: _CLINICAL,
    Permission.READ_PROGRAM_REPORTS: frozenset({Role.CARE_MANAGER, Role.ADMIN}),
    Permission.MANAGE_EHR_FEEDS: frozenset({Role.ADMIN}),
    # The care team hands patients over to itself: notes are signed with a staff record.
    Permission.HAND_OFF: _CLINICAL,
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: int
    username: str
    role: Role
    staff_id: int | None
    # The care teams the user's staff record belongs to.
    team_ids: frozenset[int]
    # How it signed in: "api_token", "browser" or "api_key".
    via: str
    # The clock the user reads times on (IANA name): their own choice, else their staff
    # record's; None: neither (the service's default applies).
    time_zone: str | None = None

    def may(self, permission: Permission) -> bool:
        return self.role in GRANTS[permission]

    @property
    def sees_all_patients(self) -> bool:
        return self.role in (Role.ADMIN, Role.INTEGRATION)

    def sees_team(self, care_team_id: int | None) -> bool:
        """Whether a patient of this team (None: no team yet) is visible to the user."""
        return self.sees_all_patients or care_team_id in self.team_ids

    def visible_teams(self) -> Collection[int] | None:
        """The teams a patient query is limited to; None: no limit."""
        return None if self.sees_all_patients else self.team_ids


@dataclass(frozen=True)
class Throttle:
    """At most `per_username` failed sign-ins for one username, and `per_client` from one
    address, within `window`; past that, sign-in is refused until the window frees."""

    per_username: int = 5
    per_client: int = 20
    window: timedelta = timedelta(minutes=15)


def locked_until(
    username_failures: Sequence[datetime],
    client_failures: Sequence[datetime],
    now: datetime,
    throttle: Throttle,
) -> datetime | None:
    """When sign-in may be tried again, if the failures within the window reached a
    limit; else None. Counting the username tried (known or not) stops guessing one
    account from many addresses; counting the address stops spraying many accounts."""
    until = None
    for failures, limit in (
        (username_failures, throttle.per_username),
        (client_failures, throttle.per_client),
    ):
        recent = sorted(at for at in failures if at > now - throttle.window)
        if len(recent) >= limit:
            frees = recent[-limit] + throttle.window
            until = frees if until is None else max(until, frees)
    return until
