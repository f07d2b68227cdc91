"""The `rpm-sim` command: simulated patients' devices, sending to a real broker and webhook."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import aiomqtt
import typer

from simulators.provision import Credentials, ProvisionError, provision
from simulators.scenario import PRESETS, ScenarioError, Simulation, generate, load
from simulators.transport import Pace, Target, send, wall_schedule

cli = typer.Typer(
    help="Simulated patients and devices for rpm: demos, labelled scenarios and load.",
    no_args_is_help=True,
    add_completion=False,
)

ScenarioName = Annotated[
    str, typer.Argument(help="A preset name (see `rpm-sim list`) or a .toml file.")
]
Seed = Annotated[int | None, typer.Option(help="Override the scenario's seed.")]
Days = Annotated[int | None, typer.Option(min=1, help="Override the scenario's length in days.")]
Start = Annotated[
    str | None,
    typer.Option(
        help="When the simulated period starts, RFC 3339 (default: it ends now;"
        " real time starts now)."
    ),
]

ApiUrl = Annotated[
    str | None,
    typer.Option(
        envvar="RPM_SIM_API_URL",
        help="rpm's base URL: provision the patients and devices first (idempotent).",
    ),
]
# The password comes from the environment only: an option's value would show in `ps`.
PASSWORD_ENVVAR = "RPM_SIM_PASSWORD"  # noqa: S105 (its name, not a password)
Username = Annotated[
    str | None,
    typer.Option(
        envvar="RPM_SIM_USERNAME",
        help=f"The rpm login that provisions (an admin's); its password in ${PASSWORD_ENVVAR}.",
    ),
]
CareTeam = Annotated[
    str | None,
    typer.Option(
        "--care-team",
        envvar="RPM_SIM_CARE_TEAM",
        help="Enrol the patients in this care team, by name (made if new) or id (digits),"
        " and put those in no team yet in it.",
    ),
]


@cli.command("list")
def list_scenarios() -> None:
    """The preset scenarios and what each shows."""
    for path in sorted(PRESETS.glob("*.toml")):
        scenario = load(path.stem)
        typer.echo(f"{scenario.name}: {' '.join(scenario.description.split())}")


@cli.command()
def show(scenario: ScenarioName, seed: Seed = None, days: Days = None, start: Start = None) -> None:
    """What a run would send: patients, devices, message counts and the expected alerts."""
    simulation = _simulate(scenario, seed, days, start, Pace.ACCELERATED)
    typer.echo(
        json.dumps(
            {
                "scenario": simulation.scenario.name,
                "start": simulation.start.isoformat(),
                "patients": [
                    {
                        "ref": p.ref,
                        "time_zone": p.time_zone,
                        "devices": {d.serial: d.kind.value for d in p.devices},
                    }
                    for p in simulation.patients
                ],
                "messages": len(simulation.messages),
                "readings": simulation.readings,
                "expected_alerts": [vars(e) for e in simulation.scenario.expected],
                "max_unlabelled_alerts": simulation.scenario.max_unlabelled_alerts,
            },
            indent=2,
        )
    )


@cli.command()
def run(
    scenario: ScenarioName,
    mqtt_url: Annotated[
        str, typer.Option(envvar="RPM_SIM_MQTT_URL", help="The broker devices publish to.")
    ] = "mqtt://127.0.0.1:1883",
    mqtt_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="RPM_SIM_MQTT_CA",
            exists=True,
            dir_okay=False,
            help="mqtts:// only: the CA certificate (PEM) the broker's must chain to; unset:"
            " the system's trust store.",
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            envvar="RPM_SIM_WEBHOOK_URL", help="rpm's /webhooks/tenovi, for Tenovi-format cohorts."
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            envvar="RPM_SIM_WEBHOOK_SECRET",
            help="The integration's secret (`rpm integrations create`).",
        ),
    ] = None,
    pace: Annotated[
        Pace,
        typer.Option(
            help="realtime; accelerated (history in --duration s); load (--rate for --duration s)."
        ),
    ] = Pace.ACCELERATED,
    duration: Annotated[
        float, typer.Option(min=0.1, help="Seconds an accelerated or load run takes.")
    ] = 60.0,
    rate: Annotated[float, typer.Option(min=1, help="Messages per second in load mode.")] = 1000.0,
    seed: Seed = None,
    days: Days = None,
    start: Start = None,
    api_url: ApiUrl = None,
    username: Username = None,
    care_team: CareTeam = None,
) -> None:
    """Send a scenario's messages, with a progress bar and a closing summary."""
    simulation = _simulate(scenario, seed, days, start, pace)
    if api_url is not None:
        _provision(simulation, api_url, _credentials(username), care_team)
    messages = simulation.messages
    if pace == Pace.LOAD:
        messages = messages[: int(rate * duration)]
    offsets = wall_schedule(messages, pace, duration, rate)
    target = Target(mqtt_url, webhook_url, webhook_secret, mqtt_ca)
    typer.echo(
        f"{simulation.scenario.name}: {len(simulation.patients)} patients, {len(messages)} messages"
        f" from {simulation.start:%Y-%m-%d %H:%M} UTC, {pace} pace",
        err=True,
    )
    with typer.progressbar(length=len(messages), label="sending", file=sys.stderr) as bar:
        try:
            summary = asyncio.run(send(messages, offsets, target, bar.update))
        except aiomqtt.MqttError as exc:
            # A certificate that does not verify lands here too: say which option matters.
            hint = "; is --mqtt-ca the broker's CA?" if "CERTIFICATE_VERIFY" in str(exc) else ""
            typer.echo(f"\nrpm-sim: no connection to the broker: {exc}{hint}", err=True)
            raise typer.Exit(1) from None
    typer.echo(summary.describe())
    if summary.errors:
        raise typer.Exit(1)


@cli.command("provision")
def provision_command(
    scenario: ScenarioName,
    api_url: Annotated[str, typer.Option(envvar="RPM_SIM_API_URL", help="rpm's base URL.")],
    username: Username = None,
    care_team: CareTeam = None,
    seed: Seed = None,
    days: Days = None,
    start: Start = None,
) -> None:
    """Enrol the scenario's patients (with care plans) and give them their devices."""
    credentials = _credentials(username)
    simulation = _simulate(scenario, seed, days, start, Pace.ACCELERATED)
    _provision(simulation, api_url, credentials, care_team)


def _credentials(username: str | None) -> Credentials:
    """The login to provision with, or exit 1 saying what is missing."""
    password = os.environ.get(PASSWORD_ENVVAR, "")
    if not username or not password:
        missing = [] if username else ["--username (or RPM_SIM_USERNAME)"]
        missing += [] if password else [PASSWORD_ENVVAR]
        typer.echo(
            f"rpm-sim: provisioning signs in to rpm: set {' and '.join(missing)}"
            " (an admin's login)",
            err=True,
        )
        raise typer.Exit(1)
    return Credentials(username, password)


def _provision(
    simulation: Simulation, api_url: str, credentials: Credentials, care_team: str | None
) -> None:
    # Devices are given from a day before the first reading, so that none is unassigned.
    try:
        done = provision(
            simulation, api_url, simulation.start - timedelta(days=1), credentials, care_team
        )
    except ProvisionError as exc:
        typer.echo(f"rpm-sim: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(done.describe(), err=True)


def _simulate(
    name: str, seed: int | None, days: int | None, start: str | None, pace: Pace
) -> Simulation:
    try:
        scenario = load(name)
    except ScenarioError as exc:
        typer.echo(f"rpm-sim: {exc}", err=True)
        raise typer.Exit(2) from None
    scenario = replace(
        scenario,
        seed=scenario.seed if seed is None else seed,
        days=scenario.days if days is None else days,
    )
    if start is not None:
        try:
            began = datetime.fromisoformat(start)
        except ValueError:
            typer.echo(
                f"rpm-sim: --start {start!r} is not a time such as 2026-11-01T00:00:00Z", err=True
            )
            raise typer.Exit(2) from None
        if began.tzinfo is None:
            typer.echo("rpm-sim: --start needs a UTC offset (e.g. Z or -05:00)", err=True)
            raise typer.Exit(2)
    else:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        # Real time starts now; the others replay history that ends now.
        began = now if pace == Pace.REALTIME else now - timedelta(days=scenario.days)
    return generate(scenario, began)


def main() -> None:
    cli()
