"""Twilio's webhooks: delivery status callbacks, and SMS replies ("ACK 1234").

Both check `X-Twilio-Signature` against the URL Twilio was given (`RPM_ALERTS_PUBLIC_URL`
plus the path and query) and the form it posts; a request that fails the check gets 403
and changes nothing. A reply is taken only from an active staff member's number, and
acknowledges only through the same lifecycle (and refusals) as the worklist.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Header, HTTPException, Request, Response
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from twilio.request_validator import RequestValidator

from rpm.alerts import notifications
from rpm.alerts import repository as alerts
from rpm.alerts.lifecycle import Acknowledge, Actor, InvalidTransition
from rpm.alerts.repository import AlertNotFound
from rpm.alerts.service import act
from rpm.api import problems
from rpm.api.deps import Conn, client_ip
from rpm.auth import audit
from rpm.auth import repository as users
from rpm.care_teams import registry as care_teams
from rpm.care_teams.registry import CareTeamError
from rpm.config import Settings
from rpm.patients import registry as patients

router = APIRouter(
    prefix="/api/v1/twilio",
    tags=["twilio webhooks"],
    responses=problems.errors(
        {403: "Not signed by Twilio: X-Twilio-Signature does not match"}, signed_in=False
    ),
)

_ACK = re.compile(r"^\s*ACK\s*#?(\d{1,18})\s*$", re.IGNORECASE)


async def _signed_form(request: Request, signature: str | None) -> dict[str, str]:
    """The posted form, if Twilio signed it; else 403."""
    settings: Settings = request.app.state.settings
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    url = settings.alerts.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    token = settings.twilio.auth_token.get_secret_value()
    if not token or not signature or not RequestValidator(token).validate(url, form, signature):
        raise HTTPException(403, "the request is not signed by Twilio (X-Twilio-Signature)")
    return form


@router.post("/status", summary="Twilio's delivery status of an SMS we sent", status_code=204)
async def status(
    request: Request,
    conn: Conn,
    x_twilio_signature: Annotated[str | None, Header()] = None,
) -> Response:
    form = await _signed_form(request, x_twilio_signature)
    notification = request.query_params.get("notification")
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not state:
        raise HTTPException(422, "a status callback needs MessageSid and MessageStatus")
    code = form.get("ErrorCode")
    async with conn.transaction():
        await notifications.record_status(
            conn,
            int(notification) if notification and notification.isdigit() else None,
            sid,
            state,
            int(code) if code and code.isdigit() else None,
        )
    return Response(status_code=204)


@router.post(
    "/inbound",
    summary="An SMS reply: ACK <alert number> from a care-team member, STOP from a patient",
    response_class=Response,
    responses={
        200: {
            "description": "TwiML: the SMS to send back, if any",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        }
    },
)
async def inbound(
    request: Request,
    conn: Conn,
    x_twilio_signature: Annotated[str | None, Header()] = None,
) -> Response:
    form = await _signed_form(request, x_twilio_signature)
    member = await care_teams.staff_by_phone(conn, form.get("From", ""))
    if member is None:
        if form.get("Body", "").strip().upper() in OPT_OUT_KEYWORDS:
            await _opt_out(request, conn, form.get("From", ""))
        # Not from a known member's number: nothing is said (Twilio answers a STOP itself).
        return _twiml(None)
    match = _ACK.match(form.get("Body", ""))
    if match is None:
        return _twiml("Reply ACK and the alert number, e.g. ACK 1234.")
    alert_id = int(match.group(1))
    team_id = await alerts.care_team_of(conn, alert_id)
    if team_id is not None and not await care_teams.is_member(conn, team_id, member.id):
        return _twiml(f"Not done: alert #{alert_id} is not one of your care team's.")
    try:
        # Named as their sign-in is, where they have one, so that one nurse is one name
        # in the alert's history whichever way they acted.
        name = await users.username_of_staff(conn, member.id) or member.username
        alert = await act(
            conn, alert_id, Acknowledge("acknowledged by SMS reply"), Actor(name, member.id)
        )
    except (InvalidTransition, AlertNotFound, CareTeamError) as exc:
        return _twiml(f"Not done: {exc}.")
    context = audit.Context(
        None, name, member.role, request.method, request.url.path, client_ip(request)
    )
    await audit.record(conn, context, "acknowledge", "alert", str(alert_id), [alert.patient_id])
    return _twiml(f"Alert #{alert_id} acknowledged.")


# Twilio's standard opt-out words: it stops delivering to the number itself; this records
# the end of the patient's consent, so that no reminder is even written.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})


async def _opt_out(request: Request, conn: AsyncConnection[TupleRow], phone: str) -> None:
    patient_ids = await patients.opt_out_by_phone(conn, phone)
    if patient_ids:
        context = audit.Context(
            None, "sms:patient", None, request.method, request.url.path, client_ip(request)
        )
        await audit.record(
            conn, context, "opt_out", "reminders", None, patient_ids, 200, {"by": "SMS STOP"}
        )


def _twiml(message: str | None) -> Response:
    inner = f"<Message>{escape(message)}</Message>" if message else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>',
        media_type="application/xml",
    )
