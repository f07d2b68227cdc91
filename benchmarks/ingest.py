"""Ingest benchmark: broker drain, COPY rate and the service's sustained rate, in one run.

    python -m benchmarks.ingest --readings 200000        (or: make bench)

Prints, for the same QoS 1 messages through a Mosquitto of its own:

(a) the drain rate of a bare aiomqtt subscriber that acknowledges manually, in batches,
    and does nothing else;
(b) the binary COPY rate into the `reading` table, and beside it the rate of the service's
    own write path (COPY into a staging table, then INSERT ... ON CONFLICT DO NOTHING);
(c) the sustained rate of readings stored by the real service (`rpm up` in a child
    process: MQTT consumer, ingest service, rule hand-off), from first stored to all stored;
(d) c / min(a, b);
(e) the service's peak resident memory (VmHWM).

Every message is published into the subscriber's persistent session before the subscriber
connects, so (a) and (c) time a consumer draining a full queue: its own ceiling, not the
publisher's. docs/benchmarks.md has the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiomqtt
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

import rpm
from rpm.config import BrokerAddress, DatabaseSettings
from rpm.db.store import prepare_schema
from rpm.devices.checks import TimeLimits
from rpm.ingest import pipeline, repository
from rpm.ingest.consumer import ConsumerOptions, _ManualAckClient
from rpm.ingest.pipeline import BatchPlan, Envelope, ReadingRow, Transport

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The targets, on a 2-core machine with the broker and the database beside us.
TARGET_STORED_PER_S = 10_000
TARGET_RATIO = 0.6
# How often (c) asks the service how much it has stored: each look costs it a /metrics page.
POLL_S = 0.1
# Cores kept busy by processes not ours, beyond which the figures are called disturbed.
DISTURBED_CORES = 0.25

SERVICE_CLIENT_ID = "rpm-bench-service"
SERVICE_GROUP = "rpm"  # as a scaled-out service would set RPM_MQTT_SHARED_GROUP
BARE_CLIENT_ID = "rpm-bench-bare"
# Another share group, so that one publication fills both sessions.
BARE_GROUP = "bench-bare"

# Broker settings for a benchmark: nothing on disk, no limit on what a session may queue.
# (Receive Maximum, which the consumer sets, overrides max_inflight_messages for MQTT 5.)
BROKER_CONFIG = """\
allow_anonymous true
persistence false
max_inflight_messages 2000
max_queued_messages 0
max_queued_bytes 0
message_size_limit 1048576
"""


@dataclass(frozen=True)
class Workload:
    readings: int
    per_message: int
    devices: int
    batch_size: int

    @property
    def messages(self) -> int:
        return -(-self.readings // self.per_message)


@dataclass(frozen=True)
class Rate:
    """Items counted between a first observation and the last, and the time between them."""

    items: int
    seconds: float
    cpu_s: float = 0.0  # CPU time this process spent meanwhile, where measured

    @property
    def per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The fields after the command name (which may hold spaces); utime and stime are 12, 13.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling, so far."""
    cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by some groups of processes, and by the whole machine."""

    groups: dict[str, float]
    machine: float

    @classmethod
    def take(cls, groups: Mapping[str, Sequence[int]]) -> CpuSample:
        return cls(
            {name: sum(_cpu_seconds(pid) for pid in pids) for name, pids in groups.items()},
            _machine_busy_seconds(),
        )

    def cores_since(self, earlier: CpuSample, seconds: float) -> dict[str, float]:
        """Cores kept busy on average between the two samples, by group and in all."""
        cores = {
            name: (used - earlier.groups[name]) / seconds for name, used in self.groups.items()
        }
        return cores | {"machine": (self.machine - earlier.machine) / seconds}


@dataclass(frozen=True)
class ServiceRun:
    stored: Rate
    messages: Rate
    peak_rss_kib: int
    handed_off: int
    commits: int
    # Cores kept busy while readings were being stored: service, database, broker, machine.
    cores: dict[str, float]


@dataclass(frozen=True)
class Broker:
    port: int
    pid: int


# --- workload -----------------------------------------------------------------------------


def serial(device: int) -> str:
    return f"BENCH-{device:05d}"


def make_messages(workload: Workload, now: datetime) -> list[tuple[str, bytes]]:
    """Native blood-pressure readings, `per_message` to a message (a device's backlog).

    Message j comes from device j mod devices; each device's readings are a minute apart
    from a day ago on, so every reading is new, within the time limits, and attributed.
    """
    local = timezone(timedelta(hours=-5))
    start = (now - timedelta(days=1)).replace(microsecond=0).astimezone(local)
    sent = [0] * workload.devices
    remaining = workload.readings
    messages = []
    for j in range(workload.messages):
        device = j % workload.devices
        count = min(workload.per_message, remaining)
        remaining -= count
        items = []
        for k in range(sent[device], sent[device] + count):
            items.append(
                {
                    "kind": "blood_pressure",
                    "measured_at": (start + timedelta(minutes=k)).isoformat(),
                    "systolic": 110 + k % 40,
                    "diastolic": 70 + k % 15,
                    "pulse": 60 + k % 30,
                    "unit": "mmHg",
                }
            )
        sent[device] += count
        document: object = items if workload.per_message > 1 else items[0]
        payload = json.dumps(document, separators=(",", ":")).encode()
        messages.append((f"{pipeline.TOPIC_PREFIX}{serial(device)}/readings", payload))
    return messages


# --- database -----------------------------------------------------------------------------


def _with_database(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextmanager
def throwaway_database(server_url: str, keep: bool) -> Iterator[str]:
    name = f"rpm_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, devices: int) -> None:
    """Patients, blood-pressure cuffs and who has which, straight in SQL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " SELECT 'BENCH-P-' || g, 'Bench', 'Patient ' || g FROM generate_series(1, %s) g",
            [devices],
        )
        conn.execute(
            "INSERT INTO device (serial, kind)"
            " SELECT 'BENCH-' || lpad(g::text, 5, '0'), 'blood_pressure_cuff'"
            " FROM generate_series(0, %s - 1) g",
            [devices],
        )
        conn.execute(
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " SELECT d.id, p.id, now() - interval '30 days'"
            " FROM device d JOIN patient p ON p.external_ref = 'BENCH-P-' || (d.id)"
        )
        conn.execute("VACUUM ANALYZE")


def reset(url: str) -> None:
    """Empty the reading table and start the next phase from a checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE reading, rejected_message")
        conn.execute("CHECKPOINT")


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


# --- broker -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mosquitto(workdir: Path) -> Iterator[Broker]:
    """A Mosquitto of the benchmark's own, on a free port (like tests/support.py)."""
    if shutil.which("mosquitto") is None:
        raise SystemExit("mosquitto is not installed (Debian package mosquitto)")
    port = free_port()
    config = workdir / "mosquitto.conf"
    # As root Mosquitto would switch to its own user, which cannot read our files.
    run_as = f"user {os.environ.get('USER') or 'root'}\n" if os.geteuid() == 0 else ""
    config.write_text(f"listener {port} 127.0.0.1\n{run_as}{BROKER_CONFIG}", encoding="utf-8")
    log = (workdir / "mosquitto.log").open("w")
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise SystemExit(f"mosquitto exited; see {workdir / 'mosquitto.log'}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("mosquitto did not start listening") from None
                time.sleep(0.05)
        yield Broker(port, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def consumer_options(client_id: str, group: str, batch_size: int) -> ConsumerOptions:
    """What `rpm up` uses against an external broker: MQTT 5, shared subscription."""
    return ConsumerOptions(
        client_id=client_id,
        keepalive_s=30,
        shared_group=group,
        protocol=aiomqtt.ProtocolVersion.V5,
        batch_size=batch_size,
    )


async def open_session(address: BrokerAddress, options: ConsumerOptions) -> None:
    """Subscribe and leave: the broker queues what follows for this client id."""
    connection = _ManualAckClient(address, options)
    async with connection.client as client:
        for topic_filter in options.topic_filters():
            await client.subscribe(topic_filter, qos=1)
    connection.close()


def publish_all(port: int, messages: Sequence[tuple[str, bytes]]) -> float:
    """Publish every message with QoS 1 and wait for every PUBACK; return the seconds."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="rpm-bench-devices", protocol=paho.MQTTv5
    )
    # Our own window of unacknowledged publications: paho's queue behind its in-flight
    # limit, fed from this thread, lost track after some 100,000 messages.
    client.max_inflight_messages_set(0)
    window = threading.BoundedSemaphore(1000)
    connected = threading.Event()
    all_acked = threading.Event()
    acked = 0

    def on_connect(*_: object) -> None:
        connected.set()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked == len(messages):
            all_acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise SystemExit("the publisher could not connect to the benchmark's broker")
        started = time.perf_counter()
        for topic, payload in messages:
            if not window.acquire(timeout=60):
                raise SystemExit(f"the broker stopped acknowledging after {acked} messages")
            client.publish(topic, payload, qos=1)
        if not all_acked.wait(60):
            raise SystemExit(f"only {acked} of {len(messages)} publications were acknowledged")
        return time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()


# --- (a) a bare subscriber ----------------------------------------------------------------


async def drain_bare(address: BrokerAddress, options: ConsumerOptions, expected: int) -> Rate:
    """Receive and acknowledge every message, in batches as the service takes them."""
    connection = _ManualAckClient(address, options)
    received = 0
    first_at = 0.0
    first_batch = 0
    first_cpu = last_cpu = 0.0
    async with connection.client as client:
        for topic_filter in options.topic_filters():
            await client.subscribe(topic_filter, qos=1)
        async with asyncio.timeout(600):
            while received < expected:
                batch = await connection.next_batch(options.batch_size)
                for message in batch:
                    connection.ack(message)
                received += len(batch)
                if not first_at:
                    first_at = time.perf_counter()
                    first_cpu = time.process_time()
                    first_batch = len(batch)
        last_at = time.perf_counter()
        last_cpu = time.process_time()
        await asyncio.sleep(0.2)  # let the last acknowledgements reach the broker
    connection.close()
    return Rate(received - first_batch, last_at - first_at, last_cpu - first_cpu)


# --- (b) COPY -----------------------------------------------------------------------------


def decode_all(url: str, messages: Sequence[tuple[str, bytes]]) -> list[ReadingRow]:
    """What the pipeline makes of the messages: the rows (b) writes."""
    received_at = datetime.now(UTC)
    decoded = [
        pipeline.decode(Envelope(Transport.MQTT, topic, payload, received_at), TimeLimits())
        for topic, payload in messages
    ]

    async def resolve() -> BatchPlan:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            devices = await repository.load_devices(conn, pipeline.serials(decoded))
        return pipeline.resolve(decoded, devices)

    plan = asyncio.run(resolve())
    if plan.dead_letters:
        raise SystemExit(f"the workload has {len(plan.dead_letters)} rejected messages")
    return plan.rows


def _chunks(rows: Sequence[ReadingRow], size: int) -> Iterator[Sequence[ReadingRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def write_rows(url: str, rows: Sequence[ReadingRow], rows_per_commit: int, how: str) -> Rate:
    """Write the rows with one of the service's two COPY paths, a commit per batch.

    "copy" is `repository.copy_readings`, the service's binary COPY straight into
    `reading` (what it does unless a key is already there); "upsert" is
    `repository.upsert_readings`, its fallback: COPY into a staging table, then
    INSERT ... ON CONFLICT DO NOTHING.
    """
    async with await psycopg.AsyncConnection.connect(url) as conn:
        started = time.perf_counter()
        inserted = 0
        for chunk in _chunks(rows, rows_per_commit):
            async with conn.transaction():
                if how == "copy":
                    await repository.copy_readings(conn, chunk)
                    inserted += len(chunk)
                else:
                    inserted += len(await repository.upsert_readings(conn, chunk))
        elapsed = time.perf_counter() - started
    if inserted != len(rows):
        raise SystemExit(f"{how} stored {inserted} of {len(rows)} rows")
    return Rate(inserted, elapsed)


# --- (c) the service ----------------------------------------------------------------------


def _counter(exposition: str, name: str) -> float:
    return sum(
        float(line.split()[-1]) for line in exposition.splitlines() if line.startswith(name + " ")
    )


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_service(
    url: str, broker: Broker, workload: Workload, workdir: Path, profile: Path | None
) -> ServiceRun:
    """`rpm up` against our database and broker; poll /metrics until all is stored.

    /metrics is cheap to poll and its stored counter moves right after each commit; a
    count(*) of `reading` every 50 ms would cost the database a scan of a growing table.
    The count is checked once at the end.
    """
    http_port = free_port()
    env = {
        **os.environ,
        # The child imports the same rpm as we do, whatever its working directory.
        "PYTHONPATH": os.pathsep.join(
            [str(Path(rpm.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
        "RPM_DATABASE_URL": url,
        "RPM_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
        "RPM_MQTT_CLIENT_ID": SERVICE_CLIENT_ID,
        "RPM_MQTT_SHARED_GROUP": SERVICE_GROUP,
        "RPM_INGEST_BATCH_SIZE": str(workload.batch_size),
        "RPM_HTTP_PORT": str(http_port),
        "RPM_DATA_DIR": str(workdir / "data"),
    }
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += ["-m", "rpm.cli", "up"]
    log_path = workdir / "service.log"
    with log_path.open("w") as log:
        # cwd: no stray .env file is read.
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=log)
    metrics_url = f"http://127.0.0.1:{http_port}/metrics"
    try:
        samples: list[tuple[float, float, float, float]] = []
        cpu: list[CpuSample] = []
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the service exited; see {log_path}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the service did not store everything in time; see {log_path}")
            try:
                with urllib.request.urlopen(metrics_url, timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.05)
                continue
            now = time.perf_counter()
            stored = _counter(text, "rpm_ingest_readings_stored_total")
            messages = _counter(text, "rpm_ingest_batch_messages_sum")
            commits = _counter(text, "rpm_ingest_batch_messages_count")
            if stored:
                if not samples:
                    groups = {
                        "service": [process.pid],
                        "database": database_backends(url),
                        "broker": [broker.pid],
                        "benchmark": [os.getpid()],
                    }
                samples.append((now, stored, messages, commits))
                cpu = [*cpu[:1], CpuSample.take(groups)]
            if stored >= workload.readings:
                break
            time.sleep(POLL_S)
        peak = _peak_rss_kib(process.pid)
        handed_off = int(_counter(text, "rpm_rules_readings_queued_total"))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    first, last = samples[0], samples[-1]
    seconds = last[0] - first[0]
    return ServiceRun(
        stored=Rate(int(last[1] - first[1]), seconds),
        messages=Rate(int(last[2] - first[2]), seconds),
        peak_rss_kib=peak,
        handed_off=handed_off,
        commits=int(last[3]),
        cores=cpu[-1].cores_since(cpu[0], seconds),
    )


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """Where the throwaway database goes, and whether it is kept: shared by the benchmarks."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("RPM_BENCH_DATABASE_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server on which a throwaway database is created and dropped "
        "(default: $RPM_BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")


def database_backends(url: str) -> list[int]:
    """The database server processes serving our database (the service's pool)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(pid) for (pid,) in rows]


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    drain: Rate  # messages
    copy: Rate  # rows
    upsert: Rate  # rows
    service: ServiceRun

    @property
    def others_cores(self) -> float:
        """Cores that processes other than ours kept busy while the service stored."""
        cores = self.service.cores
        ours = ("service", "database", "broker", "benchmark")
        return max(0.0, cores["machine"] - sum(cores[name] for name in ours))


def run_round(
    url: str,
    broker: Broker,
    workload: Workload,
    messages: Sequence[tuple[str, bytes]],
    workdir: Path,
    profile: Path | None,
) -> Round:
    """(a), (b) and (c) once each, on the same messages, from an empty reading table."""
    address = BrokerAddress("127.0.0.1", broker.port)
    bare = consumer_options(BARE_CLIENT_ID, BARE_GROUP, workload.batch_size)
    service = consumer_options(SERVICE_CLIENT_ID, SERVICE_GROUP, workload.batch_size)
    asyncio.run(open_session(address, bare))
    asyncio.run(open_session(address, service))
    publish_all(broker.port, messages)
    drain = asyncio.run(drain_bare(address, bare, workload.messages))

    rows = decode_all(url, messages)
    rows_per_commit = workload.batch_size * workload.per_message
    reset(url)
    copy = asyncio.run(write_rows(url, rows, rows_per_commit, "copy"))
    reset(url)
    upsert = asyncio.run(write_rows(url, rows, rows_per_commit, "upsert"))
    del rows
    reset(url)

    run = run_service(url, broker, workload, workdir, profile)
    stored = count(url, "reading")
    rejected = count(url, "rejected_message")
    if stored != workload.readings or rejected or run.handed_off != workload.readings:
        raise SystemExit(
            f"the service stored {stored} readings, dead-lettered {rejected} messages and "
            f"handed {run.handed_off} readings to the rules; expected {workload.readings}, 0 "
            f"and {workload.readings}"
        )
    reset(url)
    return Round(drain, copy, upsert, run)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _describe(number: int, one: Round) -> str:
    run = one.service
    cores = run.cores
    c = run.stored.per_s
    return (
        f"round {number}: (a) {one.drain.per_s:,.0f} msg/s "
        f"({one.drain.cpu_s / one.drain.items * 1e6:.0f} µs of CPU a message); "
        f"(b) {one.copy.per_s:,.0f} rows/s "
        f"(fallback {one.upsert.per_s:,.0f}); (c) {c:,.0f} readings/s in {run.commits} "
        f"commits; (e) {run.peak_rss_kib / 1024:.0f} MiB\n"
        f"         cores while storing: service {cores['service']:.2f} "
        f"({cores['service'] / c * 1e6:.1f} µs a reading), database {cores['database']:.2f}, "
        f"broker {cores['broker']:.2f}, this benchmark {cores['benchmark']:.2f}, "
        f"other processes {one.others_cores:.2f}; machine {cores['machine']:.2f} of "
        f"{os.cpu_count()}"
    )


def report(rounds: Sequence[Round], workload: Workload) -> bool:
    """The table of medians over the rounds, against the targets; True if both are met."""
    msg_per_s = statistics.median(r.drain.per_s for r in rounds)
    a = msg_per_s * workload.per_message
    b = statistics.median(r.copy.per_s for r in rounds)
    upsert = statistics.median(r.upsert.per_s for r in rounds)
    c = statistics.median(r.service.stored.per_s for r in rounds)
    c_messages = statistics.median(r.service.messages.per_s for r in rounds)
    d = c / min(a, b)
    peak = max(r.service.peak_rss_kib for r in rounds) / 1024
    rows = [
        ("(a)", "bare subscriber: drain, manual ack", f"{a:,.0f}", f"{msg_per_s:,.0f}", ""),
        ("(b)", "binary COPY into reading", f"{b:,.0f}", "", ""),
        ("", "  (fallback: staging COPY + ON CONFLICT)", f"{upsert:,.0f}", "", ""),
        (
            "(c)",
            "service: stored, rule hand-off on",
            f"{c:,.0f}",
            f"{c_messages:,.0f}",
            f">= {TARGET_STORED_PER_S:,}  {_verdict(c >= TARGET_STORED_PER_S)}",
        ),
        (
            "(d)",
            "c / min(a, b)",
            f"{d:.2f}",
            "",
            f">= {TARGET_RATIO}  {_verdict(d >= TARGET_RATIO)}",
        ),
        ("(e)", "service peak memory (VmHWM)", f"{peak:.0f} MiB", "", ""),
    ]
    print()
    what = "median" if len(rounds) > 1 else "figure"
    print(
        f"{'':4}{what + f' of {len(rounds)} round(s)':<42}{'readings/s':>12}{'msg/s':>10}  target"
    )
    for label, name, per_s, per_message, target in rows:
        print(f"{label:<4}{name:<42}{per_s:>12}{per_message:>10}  {target}")
    met = c >= TARGET_STORED_PER_S and d >= TARGET_RATIO
    print(f"overall: {_verdict(met)}")
    disturbed = max(r.others_cores for r in rounds)
    if disturbed > DISTURBED_CORES:
        print(
            f"note: other processes kept up to {disturbed:.2f} cores busy while the service "
            "was storing; the figures are disturbed: run again on a quiet machine"
        )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--readings", type=int, default=200_000, help="readings to publish")
    parser.add_argument(
        "--per-message",
        type=int,
        default=10,
        help="readings per message (an array: a device's backlog); 1 sends single readings",
    )
    parser.add_argument("--devices", type=int, default=1000, help="devices (and patients)")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="RPM_INGEST_BATCH_SIZE: messages per commit"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="repeat (a), (b) and (c); report the medians"
    )
    add_database_options(parser)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the service under cProfile (slower), write its stats to FILE, print the top",
    )
    args = parser.parse_args(argv)
    workload = Workload(args.readings, args.per_message, args.devices, args.batch_size)
    if min(workload.per_message, workload.readings, workload.devices, args.rounds) < 1:
        parser.error("--readings, --per-message, --devices and --rounds must be at least 1")

    # Stopped, still drop the database and stop the broker and the service.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rpm-bench-")))
        url = stack.enter_context(throwaway_database(args.database_url, args.keep_database))
        asyncio.run(prepare_schema(url, DatabaseSettings(url=url)))  # type: ignore[call-arg]
        seed(url, workload.devices)
        broker = stack.enter_context(mosquitto(workdir))
        messages = make_messages(workload, datetime.now(UTC))
        payload_bytes = sum(len(p) for _, p in messages)
        print(
            f"workload: {workload.readings:,} readings in {workload.messages:,} QoS 1 messages "
            f"({workload.per_message} a message, {payload_bytes / workload.messages:,.0f} bytes "
            f"on average) from {workload.devices:,} devices; batches of up to "
            f"{workload.batch_size} messages; {os.cpu_count()} CPUs",
            flush=True,
        )
        rounds = []
        for number in range(1, args.rounds + 1):
            profile = args.profile if number == args.rounds else None
            rounds.append(run_round(url, broker, workload, messages, workdir, profile))
            print(_describe(number, rounds[-1]), flush=True)

    met = report(rounds, workload)
    if args.profile is not None:
        print()
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(30)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
