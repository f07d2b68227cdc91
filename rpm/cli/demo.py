"""Demo mode of `rpm up`: the `demo` scenario's patients, plans and devices, and two weeks
of their readings played in under a minute, so that a newcomer sees alerts appear.

Only on the embedded database (never into a configured one), and only once: a restart
finds the demo's care team, staff, logins and patients there and leaves them be. The
simulator runs as its own process and talks to rpm over HTTP and MQTT only, like any
device, signed in as the demo's admin.

The demo's people are made up: a care team, a nurse on call and a care manager with
fictional phone numbers, and three logins whose passwords are generated on first start
and kept in `RPM_DATA_DIR/demo-logins.txt` (mode 0600); the log names the file, never
the passwords.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from rpm.auth import passwords, repository
from rpm.auth.access import Role
from rpm.auth.passwords import WeakPassword
from rpm.auth.repository import NewUser, UserConflict, UserError
from rpm.care_teams import registry as care_teams
from rpm.care_teams.registry import CareTeamConflict, CareTeamError, NewStaff
from rpm.config import BrokerAddress
from rpm.health import Health
from rpm.rules.engine import RuleEngine

logger = logging.getLogger("rpm.demo")

SCENARIO = "demo"
PATIENT_PREFIX = "DEMO-"
TEAM_NAME = "Demo care team"
LOGINS_FILE = "demo-logins.txt"
# Who made the demo's users, in app_user.created_by.
ACTOR = "demo"

# Phone numbers 555-0100 to 555-0199 are reserved for fiction (NANPA): no one's phone.
# Not 0101: the README's and the API's examples add a nurse with it, which must not clash.
NURSE = NewStaff("demo-nurse", "Demo Nurse", "nurse", "+15555550100")
CARE_MANAGER = NewStaff("demo-care-manager", "Demo Care Manager", "care_manager", "+15555550102")
ADMIN = "demo-admin"
# Each login: its role, and the staff record it is (by the staff username).
LOGINS: dict[str, tuple[Role, str | None]] = {
    ADMIN: (Role.ADMIN, None),
    NURSE.username: (Role.NURSE, NURSE.username),
    CARE_MANAGER.username: (Role.CARE_MANAGER, CARE_MANAGER.username),
}
# The nurse is on call (tier 1) this long from the first start, so that alerts route.
ON_CALL_FOR = timedelta(days=365)

_SEED_REFUSALS = (CareTeamError, UserConflict, UserError, WeakPassword, OSError)


@dataclass(frozen=True)
class DemoSetup:
    care_team_id: int
    logins_path: Path
    passwords: dict[str, str] = field(repr=False)  # username -> password


async def play_demo(
    health: Health,
    database_url: str,
    api_url: str,
    broker: BrokerAddress,
    seconds: float,
    data_dir: Path,
) -> None:
    # Health is a plain flag set by the app's tasks; polling it until ready costs nothing.
    while not health.ready:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        try:
            demo = await seed(conn, data_dir)
        except _SEED_REFUSALS as exc:
            logger.error("demo: its care team and logins could not be set up: %s", exc)
            return
        cursor = await conn.execute(
            "SELECT count(*) FROM patient WHERE starts_with(external_ref, %s)", [PATIENT_PREFIX]
        )
        row = await cursor.fetchone()
    worklist = f"{api_url}/ui/worklist"
    logger.info(
        "demo: open %s and sign in as %s (or %s, or %s) with a password from %s;"
        " the API's sign-in: POST %s/api/v1/auth/token",
        worklist,
        NURSE.username,
        CARE_MANAGER.username,
        ADMIN,
        demo.logins_path,
        api_url,
    )
    if row and row[0]:
        logger.info("demo: its patients are already here; their alerts are in %s", worklist)
        return
    logger.info(
        "demo: enrolling the demo patients and playing 14 days of their readings in %.0f s;"
        " their alerts appear in %s as they are raised",
        seconds,
        worklist,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "run", SCENARIO,
        "--api-url", api_url,
        "--mqtt-url", f"mqtt://{broker.host}:{broker.port}",
        "--duration", str(seconds),
        "--care-team", str(demo.care_team_id),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # The password through the environment: arguments show in `ps`.
        env=os.environ | {"RPM_SIM_USERNAME": ADMIN, "RPM_SIM_PASSWORD": demo.passwords[ADMIN]},
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
        "demo: %s. Open alerts, most severe first, in the worklist: %s; the patients, their"
        " readings and care plans: %s/ui/patients (signed in as %s: the passwords are in %s;"
        " over the API: %s/api/v1/alerts)",
        output.decode().strip().splitlines()[0] if output else "done",
        worklist,
        api_url,
        NURSE.username,
        demo.logins_path,
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


async def seed(conn: AsyncConnection[TupleRow], data_dir: Path) -> DemoSetup:
    """The demo's care team, its staff (the nurse on call), and the logins with their
    passwords in `data_dir`: made on first start, found and left be on a restart.

    One transaction: should writing the logins file fail, no login is left without it.
    """
    path = logins_path(data_dir)
    async with conn.transaction():
        # Two demo starts on one embedded database make it once.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('rpm demo seed'))")
        team_id = await _team(conn)
        staff_ids = {
            staff.username: await _team_member(conn, team_id, staff)
            for staff in (NURSE, CARE_MANAGER)
        }
        await _on_call(conn, team_id, staff_ids[NURSE.username])
        logins = await _logins(conn, path, staff_ids)
        # Demo patients enrolled before the demo had a team (an older data directory).
        await conn.execute(
            "UPDATE patient SET care_team_id = %s"
            " WHERE starts_with(external_ref, %s) AND care_team_id IS NULL",
            [team_id, PATIENT_PREFIX],
        )
    return DemoSetup(team_id, path, logins)


def logins_path(data_dir: Path) -> Path:
    """Beside the embedded PostgreSQL's cluster (`data_dir/postgres`), not in it: the
    cluster's directory belongs to the server's user."""
    return data_dir.resolve() / LOGINS_FILE


async def _team(conn: AsyncConnection[TupleRow]) -> int:
    found = await care_teams.team_by_name(conn, TEAM_NAME)
    return found.id if found else (await care_teams.create_team(conn, TEAM_NAME)).id


async def _team_member(conn: AsyncConnection[TupleRow], team_id: int, staff: NewStaff) -> int:
    record = await care_teams.staff_by_username(conn, staff.username)
    if record is None:
        record = await care_teams.add_staff(conn, staff)
        logger.info("demo: added staff member %s", record.id)
    await care_teams.add_member(conn, team_id, record.id)
    return record.id


async def _on_call(conn: AsyncConnection[TupleRow], team_id: int, nurse_id: int) -> None:
    """A tier 1 shift for the nurse from now, unless someone is on call already."""
    now = datetime.now(UTC)
    if 1 in await care_teams.on_call(conn, team_id, now):
        return
    try:
        await care_teams.add_shift(conn, team_id, nurse_id, 1, now, now + ON_CALL_FOR)
    except CareTeamConflict:
        logger.info("demo: a later on-call shift of care team %s is planned; left be", team_id)


async def _logins(
    conn: AsyncConnection[TupleRow], path: Path, staff_ids: dict[str, int]
) -> dict[str, str]:
    """The demo logins' passwords: those in the file when it and every login are there;
    else new ones, set on the logins (made if missing) and written to the file."""
    users = {username: await repository.credentials(conn, username) for username in LOGINS}
    saved = _read_logins(path)
    if all(users.values()) and saved.keys() >= LOGINS.keys():
        return {username: saved[username] for username in LOGINS}
    new = {username: secrets.token_urlsafe(18) for username in LOGINS}
    for username, (role, staff) in LOGINS.items():
        passwords.check_strength(new[username], username)
        # argon2 takes tens of milliseconds: off the event loop, which serves the API.
        password_hash = await asyncio.to_thread(passwords.hash_password, new[username])
        found = users[username]
        if found is None:
            user = NewUser(username, role, None if staff is None else staff_ids[staff])
            await repository.create_user(conn, user, password_hash, ACTOR)
        else:
            await repository.update_user(conn, found.user_id, None, password_hash)
    _write_logins(path, new)
    logger.info("demo: new passwords for its logins, written to %s", path)
    return new


def _read_logins(path: Path) -> dict[str, str]:
    """The file's username-password pairs; none when it is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    pairs = (line.split() for line in text.splitlines() if not line.startswith("#"))
    return {fields[0]: fields[1] for fields in pairs if len(fields) >= 2}


def _write_logins(path: Path, logins: dict[str, str]) -> None:
    """Readable by its owner only (0600), replaced whole: never half written."""
    lines = [
        "# The rpm demo's logins (made-up people; demo data only). Generated on first start.",
        "# Sign in with a browser at rpm's /ui/ (by default http://127.0.0.1:8000/ui/), or",
        '# over the API: POST /api/v1/auth/token with {"username": ..., "password": ...};',
        "# send the access_token back as 'Authorization: Bearer <token>'.",
        "# username  password  role",
        *(
            f"{username}  {password}  {LOGINS[username][0]}"
            for username, password in logins.items()
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    temporary.replace(path)
