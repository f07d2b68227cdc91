"""Sign-in for the API: a short-lived bearer token for a username and password, sign-out,
and who the token is."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field

from rpm.api import problems
from rpm.api.deps import BEARER, Audit, Conn, RequestBody, SignedInUser, client_ip
from rpm.auth import audit, repository, service
from rpm.auth.access import Permission
from rpm.config import Settings

router = APIRouter(prefix="/api/v1/auth", tags=["sign-in"], responses=problems.errors())


class SignIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "nurse-1", "password": "a long passphrase of your own"}]
        }
    )

    username: str = Field(min_length=1, max_length=64, examples=["nurse-1"])
    password: str = Field(min_length=1, max_length=256)


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (OAuth 2's name for the scheme)
    expires_at: datetime
    expires_in: int = Field(description="Seconds")


@router.post(
    "/token",
    summary="Sign in: a bearer token for the API",
    responses=problems.errors(
        {
            401: "The username or password is wrong",
            429: "Too many failed sign-ins; Retry-After says when to try again",
        },
        signed_in=False,
    ),
)
async def token(request: Request, conn: Conn, body: SignIn) -> Token:
    settings: Settings = request.app.state.settings
    signed_in = await audited_sign_in(request, conn, body.username, body.password, "api_token")
    return Token(
        access_token=signed_in.token,
        expires_at=signed_in.expires_at,
        expires_in=settings.auth.token_ttl_min * 60,
    )


async def audited_sign_in(
    request: Request, conn: AsyncConnection[TupleRow], username: str, password: str, kind: str
) -> service.SignedIn:
    """`service.sign_in`, the attempt recorded in the audit trail whatever its outcome:
    the API's token and the UI's sign-in form alike."""
    settings: Settings = request.app.state.settings
    context = audit.Context(
        None, username, None, request.method, request.url.path, client_ip(request)
    )
    try:
        signed_in = await service.sign_in(
            conn, username, password, client_ip(request), kind, settings.auth
        )
    except (service.SignInRefused, service.SignInLocked) as exc:
        await audit.record(conn, context, "sign_in_refused", "session", details={"why": str(exc)})
        raise
    await audit.record(conn, context, "sign_in", "session", str(signed_in.user_id))
    return signed_in


@router.post(
    "/sign-out", summary="End this token's session", status_code=status.HTTP_204_NO_CONTENT
)
async def sign_out(
    conn: Conn,
    principal: SignedInUser,
    record: Audit,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> None:
    token = credentials.credentials.strip() if credentials else ""
    async with conn.transaction():
        await repository.end_session(conn, token)
    await record("sign_out", "session", principal.user_id)


class Me(BaseModel):
    user_id: int
    username: str
    role: str
    staff_id: int | None
    care_team_ids: list[int]
    sees_all_patients: bool
    permissions: list[str] = Field(description="What the role may do")


@router.get("/me", summary="Who this token signs in as, and what they may do")
async def me(principal: SignedInUser) -> Me:
    return Me(
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role.value,
        staff_id=principal.staff_id,
        care_team_ids=sorted(principal.team_ids),
        sees_all_patients=principal.sees_all_patients,
        permissions=[p.name.lower() for p in Permission if principal.may(p)],
    )
