"""`rpm tls ...`: certificates for the broker's TLS listener (docs/tls.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rpm.certs import SERVER_VALID_DAYS, CertificateError, make_certificates

app = typer.Typer(help="TLS certificates for the MQTT broker.", no_args_is_help=True)


@app.command("make-certs")
def make_certs(
    host: Annotated[
        list[str],
        typer.Option(
            help="A name or IP address that devices and rpm reach the broker at; repeat for"
            " each (the certificate is valid for these only)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Directory for the files; one that already holds a CA keeps it and gets a"
            " new server certificate (a rotation).",
            file_okay=False,
        ),
    ],
    days: Annotated[
        int, typer.Option(min=1, max=SERVER_VALID_DAYS, help="The server certificate's validity.")
    ] = SERVER_VALID_DAYS,
) -> None:
    """Make a private CA and a server certificate for the broker, for a clinic without a PKI."""
    try:
        made = make_certificates(out, host, server_valid_days=days)
    except CertificateError as exc:
        typer.echo(f"rpm: {exc}", err=True)
        raise typer.Exit(1) from None
    ca = "kept the existing CA" if made.ca_kept else "made a new CA"
    typer.echo(
        f"{ca}; new server certificate for {', '.join(made.hosts)},"
        f" valid until {made.server_expires:%Y-%m-%d}\n"
        f"  broker (mounted at /mosquitto/certs/): {made.ca_cert.name}, {made.server_cert.name},"
        f" {made.server_key.name}\n"
        f"  devices and rpm (RPM_MQTT_CA_FILE): {made.ca_cert}\n"
        f"  keep offline, with nobody else: {made.ca_key} (to issue the next server"
        " certificate)\n"
        "  see docs/tls.md"
    )
