"""`rpm integrations ...`: the vendor webhooks allowed to push readings, and their secrets."""

from __future__ import annotations

from typing import Annotated

import typer

from rpm.cli.common import echo_json, with_connection
from rpm.ingest import integrations
from rpm.ingest.integrations import IntegrationError, Vendor

app = typer.Typer(help="Vendor webhook integrations.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Lower-case letters, digits and -.")],
    vendor: Annotated[Vendor, typer.Option(help="Whose webhook format it sends.")],
) -> None:
    """Create an integration and print its secret: it is shown this once only."""
    record, secret = with_connection(
        lambda conn: integrations.create(conn, name, vendor), (IntegrationError,)
    )
    echo_json(vars(record) | {"secret": secret})
    typer.echo(
        f"Give the vendor this secret for the Authorization header of POST /webhooks/{vendor}."
        " It cannot be shown again.",
        err=True,
    )


@app.command("list")
def list_integrations() -> None:
    """Integrations, with when each was created and revoked (never their secrets)."""
    for record in with_connection(integrations.list_integrations, (IntegrationError,)):
        echo_json(record)


@app.command("revoke")
def revoke(name: str) -> None:
    """Refuse the integration's secret from now on."""
    echo_json(with_connection(lambda conn: integrations.revoke(conn, name), (IntegrationError,)))
