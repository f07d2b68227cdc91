"""`rpm smart-clients ...`: the EHR backends that sign in with SMART Backend Services
(a signed JWT) to run FHIR Bulk Data exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rpm.auth import clients
from rpm.cli.common import echo_json, with_connection

app = typer.Typer(help="SMART Backend Services clients (FHIR Bulk Data).", no_args_is_help=True)

_REFUSALS = (clients.ClientConflict, clients.ClientError, clients.ClientNotFound)
CLI_ACTOR = "cli"


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="What the client is, e.g. 'clinic-ehr'.")],
    jwks: Annotated[Path, typer.Option(help="A file with the client's JWK Set (public keys).")],
    scope: Annotated[
        list[str], typer.Option(help="A scope it may be granted (repeat): system/*.read, ...")
    ],
) -> None:
    """Register a client and print it, with the client_id its assertions name."""
    try:
        keys = json.loads(jwks.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        typer.echo(f"rpm: cannot read the JWK Set in {jwks}: {exc}", err=True)
        raise typer.Exit(1) from None
    echo_json(
        with_connection(
            lambda conn: clients.register(conn, name, keys, scope, CLI_ACTOR), _REFUSALS
        )
    )


@app.command("list")
def list_clients() -> None:
    """The registered clients, by id."""
    for record in with_connection(clients.list_clients, _REFUSALS):
        echo_json(record)


@app.command("deactivate")
def deactivate(client_id: str) -> None:
    """Refuse the client from now on; its access tokens end at once."""
    echo_json(with_connection(lambda conn: clients.set_active(conn, client_id, False), _REFUSALS))
