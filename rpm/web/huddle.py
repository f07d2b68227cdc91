"""The huddle board in the browser (a care team's daily meeting, printable) and the
hand-offs it leads to: notes on a patient and who follows the patient up.

Reads and changes go through the API's own functions (`rpm.api.handoff`), so the pages
see, refuse and audit exactly as `/api/v1` does. The forms post normally and come back to
the page they were sent from.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from rpm.api.deps import Conn, Offset, Plans
from rpm.api.handoff import give_follow_up, huddle, write_note
from rpm.auth.access import Permission
from rpm.care_teams import registry as care_teams
from rpm.patients.handoff import MAX_NOTE_LENGTH
from rpm.web.deps import PREFIX, BrowserAudit, BrowserHandsOff, BrowserReadsPatients, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# Patients a page of the board shows, those to discuss first: a meeting's worth, and a
# page that renders at once on a phone (a team's whole board of 500 was 1.1 MB; 100 rows
# took 20 ms to render).
PAGE_SIZE = 50


@router.get("/huddle")
async def huddle_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    plans: Plans,
    team: Annotated[int | None, Query(ge=1)] = None,
    offset: Offset = 0,
) -> Response:
    """One care team's board (the user's first team unless another is chosen), a page
    at a time."""
    principal = user.principal
    teams = await care_teams.list_teams(conn, team_ids=principal.visible_teams())
    team_id = team if team is not None else (teams[0].id if teams else None)
    # Another team's board is refused (404) by `huddle`, as the API refuses it.
    page = (
        None
        if team_id is None
        else await huddle(conn, principal, record, plans, team_id, offset, PAGE_SIZE)
    )
    chosen = next((t for t in teams if t.id == team_id), None)
    board = f"{PREFIX}/huddle?team={team_id}"
    context = {
        "teams": teams,
        "team": chosen,
        "page": page,
        "rows": page.rows if page else [],
        "offset": offset,
        "page_size": PAGE_SIZE,
        "first_page": board if offset else None,
        "next_page": f"{board}&offset={page.next}" if page and page.next else None,
        "members": [m for m in chosen.members if m.active] if chosen else [],
        "hands_off": principal.may(Permission.HAND_OFF),
        "back": (f"{board}&offset={offset}" if offset else board)
        if team_id
        else f"{PREFIX}/huddle",
    }
    return render(request, user, "huddle.html", context)


def _back(to: str, fallback: str) -> str:
    """Where a form returns: the UI page it was sent from, or the fallback."""
    return to if to.startswith(f"{PREFIX}/") and "//" not in to else fallback


@router.post("/patients/{patient_id}/notes")
async def add_note(
    conn: Conn,
    user: BrowserHandsOff,
    record: BrowserAudit,
    patient_id: int,
    body: Annotated[str, Form(min_length=1, max_length=MAX_NOTE_LENGTH)],
) -> Response:
    await write_note(conn, user.principal, record, patient_id, body)
    return RedirectResponse(f"{PREFIX}/patients/{patient_id}#notes", 303)


@router.post("/patients/{patient_id}/follow-up")
async def set_follow_up(
    conn: Conn,
    user: BrowserHandsOff,
    record: BrowserAudit,
    patient_id: int,
    staff_id: Annotated[str, Form(max_length=20)] = "",
    back: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """`staff_id` empty: nobody follows the patient up."""
    chosen = int(staff_id) if staff_id.strip().isdigit() else None
    await give_follow_up(conn, user.principal, record, patient_id, chosen)
    return RedirectResponse(_back(back, f"{PREFIX}/patients/{patient_id}"), 303)
