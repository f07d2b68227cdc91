"""The demo's care team, staff and logins (`rpm up --demo`): made once, left be on a
restart, and their passwords only in a file of the owner's (0600)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from rpm.auth import passwords, repository
from rpm.care_teams import registry as care_teams
from rpm.cli import demo


async def test_the_demo_is_seeded_once_and_its_logins_kept(
    conn: psycopg.AsyncConnection[TupleRow], tmp_path: Path
) -> None:
    # A demo patient from before the demo had a team (an older data directory).
    await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name, time_zone)"
        " VALUES ('DEMO-OLD', 'Simulated', 'DEMO-OLD', 'UTC')"
    )
    first = await demo.seed(conn, tmp_path)
    logins = tmp_path / "demo-logins.txt"
    assert first.logins_path == logins.resolve()
    assert logins.stat().st_mode & 0o777 == 0o600
    assert set(first.passwords) == {"demo-admin", "demo-nurse", "demo-care-manager"}
    assert not any(password in repr(first) for password in first.passwords.values())

    team = await care_teams.team(conn, first.care_team_id)
    assert team.name == "Demo care team"
    members = {m.username: m for m in team.members}
    assert set(members) == {"demo-nurse", "demo-care-manager"}
    # Fictional numbers only (555-0100 to 555-0199).
    assert all(m.phone and m.phone.startswith("+155555501") for m in members.values())
    on_call = await care_teams.on_call(conn, team.id, datetime.now(UTC) + timedelta(days=300))
    assert on_call[1].username == "demo-nurse"

    for username, role, staff in (
        ("demo-admin", "admin", None),
        ("demo-nurse", "nurse", members["demo-nurse"].id),
        ("demo-care-manager", "care_manager", members["demo-care-manager"].id),
    ):
        found = await repository.credentials(conn, username)
        assert found is not None
        assert passwords.verify(found.password_hash, first.passwords[username])
        user = await repository.get_user(conn, found.user_id)
        assert (user.role, user.staff_id) == (role, staff)
    cursor = await conn.execute("SELECT care_team_id FROM patient WHERE external_ref = 'DEMO-OLD'")
    assert await cursor.fetchone() == (team.id,)

    # A restart: everything found, nothing made again, the same passwords and file.
    written = logins.read_text()
    again = await demo.seed(conn, tmp_path)
    assert (again.care_team_id, again.passwords) == (first.care_team_id, first.passwords)
    assert logins.read_text() == written
    cursor = await conn.execute(
        "SELECT (SELECT count(*) FROM care_team), (SELECT count(*) FROM staff),"
        " (SELECT count(*) FROM on_call_shift), (SELECT count(*) FROM app_user)"
    )
    assert await cursor.fetchone() == (1, 2, 1, 3)

    # The file lost: new passwords, set on the same logins and written anew.
    logins.unlink()
    renewed = await demo.seed(conn, tmp_path)
    assert renewed.passwords.keys() == first.passwords.keys()
    assert not set(renewed.passwords.values()) & set(first.passwords.values())
    assert logins.stat().st_mode & 0o777 == 0o600
    found = await repository.credentials(conn, "demo-nurse")
    assert found is not None
    assert passwords.verify(found.password_hash, renewed.passwords["demo-nurse"])
    cursor = await conn.execute("SELECT count(*) FROM app_user")
    assert await cursor.fetchone() == (3,)
