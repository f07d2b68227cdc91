"""Numbered, forward-only SQL migrations.

Files `migrations/NNNN_<slug>.sql` are applied in order, each in its own transaction and
recorded in `schema_migration` with a checksum. The whole run holds a session advisory
lock, so processes that start together take turns: the first applies, the rest find
nothing to do. An applied file that has since been edited, or a database that is ahead
of this code, stops the run with a message saying so.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_lock key for the migration run: the bytes "rpm.migr" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"rpm.migr", "big", signed=True)
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migrations on disk and the ones recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, in order; their numbers must run 1, 2, 3, ..."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_<slug>.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} is out of sequence: "
                f"expected number {expected:04d}"
            )
    return migrations


_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def apply_migrations(
    conn: psycopg.AsyncConnection[TupleRow], migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply what is pending under the advisory lock; return what this call applied.

    `conn` must be in autocommit mode: each migration opens its own transaction.
    """
    migrations = discover() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    try:
        await conn.execute(_CREATE_LEDGER)
        cursor = await conn.execute("SELECT version, name, checksum FROM schema_migration")
        rows = await cursor.fetchall()
        recorded = {version: (name, checksum) for version, name, checksum in rows}
        _check_history(migrations, recorded)
        applied = []
        for migration in migrations:
            if migration.version in recorded:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                    [migration.version, migration.name, migration.checksum],
                )
            logger.info(
                "applied migration %04d_%s",
                migration.version,
                migration.name,
                extra={"action": "migrate", "version": migration.version},
            )
            applied.append(migration)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])


def _check_history(migrations: list[Migration], recorded: dict[int, tuple[str, str]]) -> None:
    known = {migration.version: migration for migration in migrations}
    ahead = sorted(set(recorded) - set(known))
    if ahead:
        raise MigrationError(
            f"the database has migration {ahead[-1]:04d} but this rpm knows only up to "
            f"{len(migrations):04d}: run a newer rpm against this database"
        )
    for version, (name, checksum) in recorded.items():
        if known[version].checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{name} was changed after it was applied; "
                "migrations are forward-only: add a new one instead"
            )
