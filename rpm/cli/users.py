"""`rpm users ...`: sign-in accounts, the first admin included, and API keys."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rpm.auth import passwords, repository
from rpm.auth.access import Role
from rpm.auth.passwords import WeakPassword
from rpm.auth.repository import NewUser, UserConflict, UserError, UserNotFound
from rpm.auth.tokens import new_api_key
from rpm.cli.common import echo_json, with_connection

app = typer.Typer(help="Users who sign in, and API keys.", no_args_is_help=True)

_REFUSALS = (UserConflict, UserError, UserNotFound, WeakPassword)
CLI_ACTOR = "cli"


def _read_password(username: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        passwords.check_strength(password, username)
    except WeakPassword as exc:
        typer.echo(f"rpm: {exc}", err=True)
        raise typer.Exit(1) from None
    return password


@app.command("add")
def add(
    username: str,
    role: Annotated[Role, typer.Option(help="What the user may do.")],
    staff_id: Annotated[
        int | None, typer.Option(help="The care-team member this login is (nurses, managers).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input, not a prompt.")
    ] = False,
) -> None:
    """Add a user; asks for the password (an integration has none: give it an API key)."""
    password_hash = None
    if role is not Role.INTEGRATION:
        password_hash = passwords.hash_password(_read_password(username, password_stdin))
    record = with_connection(
        lambda conn: repository.create_user(
            conn, NewUser(username, role, staff_id), password_hash, CLI_ACTOR
        ),
        _REFUSALS,
    )
    echo_json(record)


@app.command("list")
def list_users() -> None:
    """Users, by id (never their passwords)."""
    for record in with_connection(lambda conn: repository.list_users(conn, 0, 10_000), _REFUSALS):
        echo_json(record)


@app.command("api-key")
def api_key(
    user_id: int,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'EHR feed'.")],
) -> None:
    """Create an API key for the user and print it: it is shown this once only."""
    key = new_api_key()
    record = with_connection(
        lambda conn: repository.add_api_key(conn, user_id, name, key, CLI_ACTOR), _REFUSALS
    )
    echo_json(vars(record) | {"key": key.key})
    typer.echo("Send it as 'Authorization: Bearer <key>'. It cannot be shown again.", err=True)
