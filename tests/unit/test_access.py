"""Roles, the principal's reach, the login throttle, tokens and passwords: plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rpm.auth import passwords, tokens
from rpm.auth.access import GRANTS, Permission, Principal, Role, Throttle, locked_until

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _principal(role: Role, teams: frozenset[int] = frozenset({1})) -> Principal:
    return Principal(1, "u", role, 7, teams, "api_token")


def test_every_permission_is_granted_to_someone_and_only_care_managers_change_plans() -> None:
    assert set(GRANTS) == set(Permission)
    assert all(GRANTS.values())
    assert GRANTS[Permission.CHANGE_CARE_PLANS] == {Role.CARE_MANAGER}
    assert _principal(Role.NURSE).may(Permission.ACT_ON_ALERTS)
    assert not _principal(Role.NURSE).may(Permission.MANAGE_DEVICES)
    assert not _principal(Role.INTEGRATION).may(Permission.ACT_ON_ALERTS)


def test_clinicians_see_their_teams_patients_admins_and_integrations_all() -> None:
    nurse = _principal(Role.NURSE)
    assert nurse.sees_team(1)
    assert not nurse.sees_team(2)
    assert not nurse.sees_team(None)
    assert nurse.visible_teams() == {1}
    for role in (Role.ADMIN, Role.INTEGRATION):
        assert _principal(role, frozenset()).sees_team(2)
        assert _principal(role, frozenset()).visible_teams() is None


def test_the_throttle_locks_at_the_limit_until_the_window_frees() -> None:
    throttle = Throttle(per_username=3, per_client=5, window=timedelta(minutes=15))
    minutes = [NOW - timedelta(minutes=m) for m in (20, 10, 5, 1)]
    # 20 minutes ago is outside the window: three inside, the limit.
    assert locked_until(minutes, [], NOW, throttle) == minutes[1] + timedelta(minutes=15)
    assert locked_until(minutes[:3], [], NOW, throttle) is None
    clients = [NOW - timedelta(seconds=s) for s in range(5)]
    assert locked_until([], clients, NOW, throttle) == clients[-1] + timedelta(minutes=15)
    assert locked_until(minutes, clients, NOW, throttle) == clients[-1] + timedelta(minutes=15)


def test_api_keys_split_into_prefix_and_secret_and_only_the_hash_is_kept() -> None:
    key = tokens.new_api_key()
    assert key.key.startswith(f"rpm_{key.prefix}_")
    parts = tokens.split_api_key(key.key)
    assert parts is not None
    assert parts[0] == key.prefix
    assert tokens.secret_matches(parts[1], key.secret_hash)
    assert not tokens.secret_matches(parts[1] + "x", key.secret_hash)
    assert tokens.split_api_key("rpm_nounderscore") is None
    assert tokens.split_api_key("Bearer-something") is None


def test_passwords_are_argon2id_and_weak_ones_are_refused_with_the_reason() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "wrong horse battery")
    assert not passwords.verify(None, "anything at all")
    with pytest.raises(passwords.WeakPassword, match="at least 12"):
        passwords.check_strength("short", "nurse-1")
    with pytest.raises(passwords.WeakPassword, match="username"):
        passwords.check_strength("nurse-1-is-my-password", "nurse-1")
