"""/ui/settings: the signed-in user's own settings, for now the clock every page shows
times on. Saved through the API's own call (`rpm.api.users.change_own_settings`, audited
as an `update` of the user), so the page and `PATCH /api/v1/users/me` are one change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from rpm.api.deps import Conn
from rpm.api.users import OwnSettings, change_own_settings
from rpm.auth import repository as users
from rpm.care_teams import registry as care_teams
from rpm.web import format as web_format
from rpm.web.deps import PREFIX, BrowserAudit, SignedInBrowser, render, settings_of

router = APIRouter(prefix=PREFIX, include_in_schema=False)

SETTINGS = f"{PREFIX}/settings"


@router.get("/settings")
async def settings_page(
    request: Request, conn: Conn, user: SignedInBrowser, saved: bool = False
) -> Response:
    """The zones to choose from, the user's own choice (if any) selected, and what the
    default would be."""
    record = await users.get_user(conn, user.principal.user_id)
    context = {
        "zones": web_format.ZONES,
        "chosen": record.time_zone,
        "default_zone": await _default_zone(request, conn, record.staff_id),
        "staff_linked": record.staff_id is not None,
        "saved": saved,
        "now": datetime.now(UTC),
    }
    return render(request, user, "settings.html", context)


@router.post("/settings")
async def save_settings(
    conn: Conn,
    user: SignedInBrowser,
    record: BrowserAudit,
    time_zone: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Empty: back to the default. A plain form post, back to the page saying so."""
    chosen = time_zone.strip() or None
    if chosen is not None:
        try:
            web_format.zone(chosen)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    await change_own_settings(conn, user.principal, record, OwnSettings(time_zone=chosen))
    return RedirectResponse(f"{SETTINGS}?saved=true", 303)


async def _default_zone(request: Request, conn: Conn, staff_id: int | None) -> str:
    """The zone the user reads on without a choice of their own: their staff record's,
    else the service's."""
    if staff_id is not None:
        return (await care_teams.staff_member(conn, staff_id)).time_zone
    return settings_of(request).service.time_zone
