"""Users and their API keys, for admins. A new key is shown once, in the reply that
creates it; only its hash is kept."""

from __future__ import annotations

from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rpm.api import problems
from rpm.api.deps import Audit, AuditTrail, Conn, ManagesUsers, PageLimit, RequestBody, SignedInUser
from rpm.auth import passwords, repository
from rpm.auth.access import Principal, Role
from rpm.auth.repository import ApiKeyRecord, Connection, NewUser, UserRecord
from rpm.auth.tokens import new_api_key

router = APIRouter(
    prefix="/api/v1",
    tags=["users"],
    responses=problems.errors(
        {
            403: "Only admins manage users",
            404: "No such user or key",
            409: "The username is taken, or the staff member has a login",
        }
    ),
)


class UserIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "nurse-1",
                    "role": "nurse",
                    "staff_id": 1,
                    "password": "a long passphrase of your own",
                },
                {"username": "ehr-feed", "role": "integration"},
            ]
        }
    )

    username: str = Field(examples=["nurse-1"])
    role: Role
    staff_id: int | None = Field(
        None, description="The care-team member this login is (nurses, care managers)"
    )
    password: str | None = Field(None, description="None for an integration (API keys only)")

    @model_validator(mode="after")
    def _password_fits_role(self) -> Self:
        if self.role is Role.INTEGRATION and self.password is not None:
            raise ValueError("an integration signs in with API keys, not a password")
        if self.role is not Role.INTEGRATION and self.password is None:
            raise ValueError(f"a {self.role.value} needs a password")
        return self


@router.post("/users", status_code=status.HTTP_201_CREATED, summary="Add a user")
async def add_user(conn: Conn, admin: ManagesUsers, record: Audit, user: UserIn) -> UserRecord:
    new = NewUser(user.username, user.role, user.staff_id)
    return await create_login(conn, admin, record, new, user.password)


async def create_login(
    conn: Connection, admin: Principal, record: AuditTrail, user: NewUser, password: str | None
) -> UserRecord:
    """The user, with the password's hash (None: an integration, API keys only), audited:
    for the API and the staff page alike."""
    password_hash = None
    if password is not None:
        passwords.check_strength(password, user.username)
        password_hash = passwords.hash_password(password)
    created = await repository.create_user(conn, user, password_hash, admin.username)
    await record("create", "user", created.id, details={"role": created.role})
    return created


class OwnSettings(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"time_zone": "America/Chicago"}]})

    time_zone: str | None = Field(
        description="IANA name of the clock the web UI shows you times on; null: your staff"
        " record's, else the service's (RPM_TIME_ZONE)",
        examples=["America/Chicago"],
    )

    @field_validator("time_zone")
    @classmethod
    def _iana_zone(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"time zone {name!r} is not an IANA time zone name (e.g. America/Chicago)"
                ) from None
        return name


# Before /users/{user_id}, which would take "me" for an id.
@router.patch("/users/me", summary="Your own settings: the clock the web UI shows times on")
async def change_own_settings(
    conn: Conn, user: SignedInUser, record: Audit, change: OwnSettings
) -> UserRecord:
    """Any signed-in user, for themselves only; audited as an `update` of their user."""
    updated = await repository.set_time_zone(conn, user.user_id, change.time_zone)
    await record("update", "user", user.user_id, details={"time_zone": change.time_zone})
    return updated


@router.get("/users", summary="Users, by id")
async def list_users(
    conn: Conn,
    admin: ManagesUsers,
    after: Annotated[int, Query(ge=0, description="Start after this id (paging)")] = 0,
    limit: PageLimit = 100,
) -> list[UserRecord]:
    return await repository.list_users(conn, after, limit)


@router.get("/users/{user_id}", summary="One user")
async def get_user(conn: Conn, admin: ManagesUsers, user_id: int) -> UserRecord:
    return await repository.get_user(conn, user_id)


class UserChange(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"active": False}, {"password": "a new long passphrase"}]}
    )

    active: bool | None = Field(None, description="false: signs out and revokes the keys")
    password: str | None = Field(None, description="A new password; signs out every session")


@router.patch("/users/{user_id}", summary="Deactivate, reactivate, or reset a password")
async def change_user(
    conn: Conn, admin: ManagesUsers, record: Audit, user_id: int, change: UserChange
) -> UserRecord:
    password_hash = None
    if change.password is not None:
        user = await repository.get_user(conn, user_id)
        passwords.check_strength(change.password, user.username)
        password_hash = passwords.hash_password(change.password)
    updated = await repository.update_user(conn, user_id, change.active, password_hash)
    details = {"active": change.active, "password_reset": change.password is not None}
    await record("update", "user", user_id, details=details)
    return updated


class ApiKeyIn(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "EHR feed"}]})

    name: str = Field(min_length=1, max_length=200, examples=["EHR feed"])


class NewApiKeyOut(BaseModel):
    key: str = Field(description="Shown once: keep it now, it cannot be read again")
    api_key: ApiKeyRecord


@router.post(
    "/users/{user_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    summary="A new API key for the user (shown once)",
)
async def add_api_key(
    conn: Conn, admin: ManagesUsers, record: Audit, user_id: int, body: ApiKeyIn
) -> NewApiKeyOut:
    key = new_api_key()
    async with conn.transaction():
        created = await repository.add_api_key(conn, user_id, body.name, key, admin.username)
    await record("create", "api_key", created.id, details={"user_id": user_id})
    return NewApiKeyOut(key=key.key, api_key=created)


@router.get("/users/{user_id}/api-keys", summary="The user's API keys")
async def list_api_keys(conn: Conn, admin: ManagesUsers, user_id: int) -> list[ApiKeyRecord]:
    await repository.get_user(conn, user_id)
    return await repository.api_keys(conn, user_id)


@router.post("/api-keys/{key_id}/revoke", summary="Revoke an API key")
async def revoke_api_key(
    conn: Conn, admin: ManagesUsers, record: Audit, key_id: int
) -> ApiKeyRecord:
    async with conn.transaction():
        revoked = await repository.revoke_api_key(conn, key_id, admin.username)
    await record("revoke", "api_key", key_id)
    return revoked
