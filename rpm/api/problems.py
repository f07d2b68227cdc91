"""What the OpenAPI schema says of the API's errors: each is a problem details body (RFC
9457, `application/problem+json`, made by `rpm.api.deps.problem`), and each router lists
the statuses its routes can answer with, so a client generated from the schema, and
schemathesis, know every reply they can get.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the field"
    )
    msg: str
    type: str = Field(description="pydantic's error type, e.g. `missing`, `int_parsing`")


class Problem(BaseModel):
    """An error: `detail` says in words what was wrong and what to do about it."""

    # Extensions may follow (RFC 9457, section 3.2).
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "no patient with id 123",
                    "instance": "/api/v1/patients/123",
                }
            ]
        },
    )

    type: str = Field("about:blank", description="No further meaning than the status")
    title: str = Field(description="The status's phrase")
    status: int
    detail: str = Field(description="What was wrong, in words a person can act on")
    instance: str = Field(description="The path that was asked for")
    errors: list[FieldError] | None = Field(
        None, description="On 422 for a request that does not fit the schema: each field's error"
    )


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}

_DEFAULTS: dict[int, str] = {
    400: "The body could not be read: it is not JSON in UTF-8",
    401: "Not signed in, or the token or API key is unknown, expired or revoked:"
    " sign in (POST /api/v1/auth/token) and send `Authorization: Bearer <token>`",
    403: "The role may not do this; `detail` says what it lacks",
    422: "The request is not valid; `detail` says why (and `errors`, field by field)",
    503: "The database is not available at the moment: nothing was done; retry after Retry-After",
}


def _response(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def errors(
    described: Mapping[int, str] | None = None, *, signed_in: bool = True
) -> dict[int | str, dict[str, Any]]:
    """The problem replies of a router's routes, for `APIRouter(responses=...)`: 400, 422
    and 503 of every route, 401 and 403 of one that needs a sign-in, and those `described`
    (404, 409, 429...), with what each means there."""
    statuses = {400: _DEFAULTS[400], 422: _DEFAULTS[422], 503: _DEFAULTS[503]}
    if signed_in:
        statuses |= {401: _DEFAULTS[401], 403: _DEFAULTS[403]}
    statuses |= dict(described or {})
    return {status: _response(status, text) for status, text in sorted(statuses.items())}


def document(app: FastAPI) -> None:
    """Put `Problem` in the schema's components, where `errors()` refers to it: no route
    returns it as a model, so FastAPI would not."""
    make_schema: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make_schema()  # which keeps it in app.openapi_schema
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        definitions = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definitions.pop("$defs", {}))
        components["Problem"] = definitions
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
