"""The dead letters page, for admins: the messages that did not become readings, newest
first, filtered by reason and device and paged; one inspected with its raw bytes; replayed
one at a time, or all that match the filter (after assigning their device, say).

Reads and replays go through the API's own `inspect_dead_letter`, `replay_dead_letter`
and `replay_dead_letters`, so the page refuses and audits exactly as
`/api/v1/dead-letters` does (a read of a dead letter is audited: its bytes may be someone's
reading). Filters and paging are plain links and a GET form; the replays post with htmx
and get their outcomes back, in `ReplayOutcome.describe()`'s words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from rpm.api.dead_letters import (
    MAX_REPLAY,
    inspect_dead_letter,
    read_dead_letters,
    replay_dead_letter,
    replay_dead_letters,
)
from rpm.api.deps import AuditTrail, Conn, Ingest, status_of
from rpm.devices import registry
from rpm.devices.model import Reason
from rpm.ingest.dead_letters import DeadLetterError, DeadLetterFilter
from rpm.web import format as web_format
from rpm.web.deps import (
    PREFIX,
    BrowserAudit,
    BrowserManagesDeadLetters,
    is_htmx,
    render,
)
from rpm.web.devices import DEVICES, device_path

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 25
DEAD_LETTERS = f"{PREFIX}/dead-letters"
REASONS = list(Reason)
# A payload may be up to a megabyte (the broker's limit, and the webhooks'): a page shows
# its start, the API all of it.
SHOWN_PAYLOAD_BYTES = 16 * 1024
# What the replay-all form offers at first; at most the API's MAX_REPLAY.
REPLAY_LIMIT = 100


def dead_letter_path(dead_letter_id: int) -> str:
    return f"{DEAD_LETTERS}/{dead_letter_id}"


@dataclass(frozen=True)
class DeadLetterView:
    """What the address asks to be shown: filters and the page."""

    reason: Reason | None = None
    device_serial: str | None = None
    include_replayed: bool = False
    # Paging: older than this id (None: the newest).
    before_id: int | None = None

    @property
    def matching(self) -> DeadLetterFilter:
        return DeadLetterFilter(self.reason, self.device_serial)

    def url(self, before_id: int | None = None) -> str:
        """The page with these filters, at another page (None: the newest)."""
        params = {
            "reason": self.reason.value if self.reason else None,
            "device_serial": self.device_serial,
            "include_replayed": "true" if self.include_replayed else None,
            "before_id": before_id,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return DEAD_LETTERS + (f"?{query}" if query else "")


# A reason's code, or "" for any.
REASON_CHOICE = f"^({'|'.join(Reason)})?$"


def _view(
    reason: str, device_serial: str, include_replayed: bool, before_id: int | None = None
) -> DeadLetterView:
    # The filter form sends reason="" for "any" and device_serial="" for "every device".
    serial = device_serial.strip() or None
    return DeadLetterView(Reason(reason) if reason else None, serial, include_replayed, before_id)


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request,
    conn: Conn,
    user: BrowserManagesDeadLetters,
    record: BrowserAudit,
    reason: Annotated[str, Query(pattern=REASON_CHOICE)] = "",
    device_serial: Annotated[str, Query(max_length=200)] = "",
    include_replayed: bool = False,
    # At most the id column's (bigint) largest.
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    view = _view(reason, device_serial, include_replayed, before_id)
    context = await _list_context(conn, record, view)
    return render(request, user, "dead_letters.html", context)


async def _list_context(
    conn: AsyncConnection[TupleRow], record: AuditTrail, view: DeadLetterView
) -> dict[str, Any]:
    page = await read_dead_letters(
        conn, record, view.matching, view.include_replayed, view.before_id, PAGE_SIZE + 1
    )
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return {
        "letters": page,
        "view": view,
        "next_page": view.url(before_id=page[-1].id) if more else None,
        "reasons": REASONS,
        "replay_limit": REPLAY_LIMIT,
        "max_replay": MAX_REPLAY,
        "dead_letter_path": dead_letter_path,
        "now": datetime.now(UTC),
        "outcomes": None,
    }


@router.post("/dead-letters/replay")
async def replay_matching(
    request: Request,
    conn: Conn,
    ingest: Ingest,
    user: BrowserManagesDeadLetters,
    record: BrowserAudit,
    reason: Annotated[str, Form(pattern=REASON_CHOICE)] = "",
    device_serial: Annotated[str, Form(max_length=200)] = "",
    include_replayed: Annotated[bool, Form()] = False,
    limit: Annotated[int, Form(ge=1, le=MAX_REPLAY)] = REPLAY_LIMIT,
    confirm: Annotated[bool, Form()] = False,
) -> Response:
    """Replay up to `limit` of the pending dead letters that match the page's filter,
    oldest first, once the admin has confirmed it; each outcome in words, above the list
    as it now stands."""
    view = _view(reason, device_serial, include_replayed)
    if view.reason is None and view.device_serial is None:
        raise HTTPException(
            422,
            "choose a reason or a device serial first: replaying every dead letter at once"
            " is not offered",
        )
    if not confirm:
        raise HTTPException(422, "tick the box to confirm the replay")
    outcomes = await replay_dead_letters(ingest, record, (), view.matching, limit)
    context = await _list_context(conn, record, view) | {"outcomes": outcomes}
    template = "_dead_letters.html" if is_htmx(request) else "dead_letters.html"
    return render(request, user, template, context)


@router.get("/dead-letters/{dead_letter_id}")
async def dead_letter_page(
    request: Request,
    conn: Conn,
    user: BrowserManagesDeadLetters,
    record: BrowserAudit,
    dead_letter_id: int,
) -> Response:
    """One dead letter: what is known of it, its raw bytes shown safely, and its replay."""
    message = await inspect_dead_letter(conn, record, dead_letter_id)
    context = {
        "letter": message,
        "payload": web_format.shown_payload(message.raw(), SHOWN_PAYLOAD_BYTES),
        **await _device_link(conn, message.device_serial),
        "list_url": DeadLetterView(device_serial=message.device_serial).url(),
        "now": datetime.now(UTC),
        **_replay_context(message.id, message.replayed_at, message.replay_result),
    }
    return render(request, user, "dead_letter.html", context)


async def _device_link(
    conn: AsyncConnection[TupleRow], serial: str | None
) -> dict[str, str | bool | None]:
    """Where the admin goes about the message's device: its page, or the form that
    registers it when it is not known (yet)."""
    if serial is None:
        return {"device_url": None, "device_known": False}
    try:
        device = await registry.get(conn, serial)
    except registry.NotFound:
        register = f"{DEVICES}?{urlencode({'serial': serial})}#register-device"
        return {"device_url": register, "device_known": False}
    return {"device_url": device_path(device.serial), "device_known": True}


def _replay_context(
    dead_letter_id: int, replayed_at: datetime | None = None, replay_result: str | None = None
) -> dict[str, Any]:
    """The replay section's: the form, or when and how the dead letter was replayed."""
    return {
        "dead_letter_id": dead_letter_id,
        "dead_letter_path": dead_letter_path,
        "replayed_at": replayed_at,
        "replay_result": replay_result,
        "outcome": None,
        "refusal": None,
    }


@router.post("/dead-letters/{dead_letter_id}/replay")
async def replay_one(
    request: Request,
    ingest: Ingest,
    user: BrowserManagesDeadLetters,
    record: BrowserAudit,
    dead_letter_id: int,
) -> Response:
    """The replay's outcome in words, in place of the button; a refusal (already
    replayed) there too. Without htmx (a plain form post): back to the dead letter's page,
    which shows the outcome, or a page saying why not."""
    context = _replay_context(dead_letter_id)
    try:
        context["outcome"] = await replay_dead_letter(ingest, record, dead_letter_id)
        status = 200
    except DeadLetterError as exc:
        if not is_htmx(request):
            raise
        context["refusal"], status = str(exc), status_of(exc)
    if not is_htmx(request):
        return RedirectResponse(dead_letter_path(dead_letter_id), 303)
    return render(request, user, "_dead_letter_replay.html", context, status)
