"""The `rpm` command."""

from __future__ import annotations

import typer

from rpm.cli import dead_letters, devices, integrations, serve, smart_clients, tls, users

cli = typer.Typer(
    help="rpm: remote patient monitoring ingest and alerting.",
    no_args_is_help=True,
    add_completion=False,
)
cli.command()(serve.up)
cli.command()(serve.migrate)
cli.add_typer(devices.app, name="devices")
cli.add_typer(dead_letters.app, name="dead-letters")
cli.add_typer(integrations.app, name="integrations")
cli.add_typer(users.app, name="users")
cli.add_typer(smart_clients.app, name="smart-clients")
cli.add_typer(tls.app, name="tls")


def main() -> None:
    cli()
