"""Small helpers for tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rpm.app import Wiring
from rpm.config import (
    BrokerAddress,
    DatabaseSettings,
    HttpSettings,
    IngestSettings,
    MqttSettings,
    ServiceSettings,
    Settings,
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MosquittoProcess:
    """A Mosquitto of the test's own (own port, config and data), to stop and restart."""

    def __init__(self, config: str, workdir: Path, port: int | None = None) -> None:
        if shutil.which("mosquitto") is None:
            pytest.skip("Mosquitto is not installed (Debian package mosquitto)")
        self.port = port or free_port()
        self.config_path = workdir / "mosquitto.conf"
        # As root Mosquitto would switch to its own user, which cannot read our files.
        run_as = f"user {os.environ.get('USER') or 'root'}\n" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            f"listener {self.port} 127.0.0.1\n{run_as}{config}\n", encoding="utf-8"
        )
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 10
        while True:
            if self._process.poll() is not None:
                output = self._process.stdout.read() if self._process.stdout else ""
                raise RuntimeError(f"mosquitto exited:\n{output}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start listening") from None
                time.sleep(0.05)
            else:
                return

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._process is not None:
            self._process.send_signal(sig)
            self._process.communicate(timeout=10)
            self._process = None


def wiring(database_url: str, broker: BrokerAddress, fatal: list[str]) -> Wiring:
    """What `rpm up` would wire for this database and broker; fatal errors land in `fatal`."""
    settings = Settings(
        service=ServiceSettings(),
        database=DatabaseSettings(url=database_url, connect_timeout_s=2),
        mqtt=MqttSettings(client_id=f"rpm-test-{free_port()}"),
        ingest=IngestSettings(batch_size=50),
        http=HttpSettings(),
    )
    return Wiring(settings, database_url, broker, broker_is_embedded=False, on_fatal=fatal.append)
