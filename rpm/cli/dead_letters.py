"""`rpm dead-letters ...`: list, inspect and replay rejected messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from rpm.cli.common import echo_json, on_database, with_connection
from rpm.config import Settings
from rpm.db.store import make_pool
from rpm.devices.model import Reason
from rpm.ingest import dead_letters
from rpm.ingest.dead_letters import DeadLetterError, DeadLetterFilter
from rpm.ingest.service import IngestService, ReplayOutcome
from rpm.rules.engine import RuleEngine
from rpm.rules.handoff import RulesHandoff

app = typer.Typer(
    help="Messages that did not become readings, kept with the reason why.",
    no_args_is_help=True,
)


@app.command("list")
def list_dead_letters(
    reason: Annotated[Reason | None, typer.Option(help="Only this reason.")] = None,
    device: Annotated[str | None, typer.Option(help="Only this device serial.")] = None,
    include_replayed: Annotated[bool, typer.Option(help="Also those already replayed.")] = False,
    before: Annotated[int | None, typer.Option(help="Start before this id (paging).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Dead letters, newest first, one JSON object a line (without their bytes)."""
    found = with_connection(
        lambda conn: dead_letters.list_dead_letters(
            conn,
            DeadLetterFilter(reason, device),
            include_replayed=include_replayed,
            before_id=before,
            limit=limit,
        ),
        (DeadLetterError,),
    )
    for record in found:
        echo_json(record)


@app.command("show")
def show(dead_letter_id: int) -> None:
    """One dead letter, with its raw bytes (as text when they are UTF-8, else base64)."""
    echo_json(
        with_connection(lambda conn: dead_letters.get(conn, dead_letter_id), (DeadLetterError,))
    )


@app.command("replay")
def replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead letter ids.")] = None,
    reason: Annotated[Reason | None, typer.Option(help="All pending with this reason.")] = None,
    device: Annotated[str | None, typer.Option(help="All pending from this serial.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Feed dead letters through the pipeline again (after assigning the device, say).

    Give ids, or --reason and/or --device to replay (up to --limit of) all that match.
    """
    if bool(ids) == bool(reason or device):
        typer.echo("rpm: give dead letter ids, or --reason and/or --device", err=True)
        raise typer.Exit(2)

    async def run(settings: Settings, url: str) -> list[ReplayOutcome]:
        async with make_pool(url, settings.database) as pool:
            handoff = RulesHandoff(RuleEngine(pool))
            service = IngestService(pool, settings.ingest.time_limits(), handoff=handoff)
            return await service.replay(ids or (), DeadLetterFilter(reason, device), limit)

    outcomes: Sequence[ReplayOutcome] = on_database(run, (DeadLetterError,))
    for outcome in outcomes:
        echo_json(vars(outcome) | {"result": outcome.describe()})
