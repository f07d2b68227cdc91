"""SMART Backend Services (hl7.org/fhir/smart-app-launch/backend-services.html), the
checks that need no database: a client's JWK Set, its signed assertion, and scopes.
No I/O (PyJWT, over `cryptography`, does the signatures): plain values in, plain values
or a `SmartRefusal` out.

A client proves who it is with a JWT it signs (RS384 or ES384) by a key of the JWK Set an
admin registered for it: `iss` and `sub` its client_id, `aud` the token URL, `exp` at most
five minutes ahead, `jti` unique (the caller keeps those seen: a replay is refused). It may
ask for system scopes of read access, in SMART v1 (`system/Observation.read`, `.*`) or v2
(`system/*.rs`, `.r`) syntax, and is granted no more than its registration allows.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHMS = ("RS384", "ES384")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The Backend Services profile: "exp ... no more than five minutes in the future".
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
# Clock skew forgiven between the client and rpm.
LEEWAY = timedelta(seconds=30)
_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]+)\.(read|\*|[cruds]+)")


class SmartRefusal(Exception):
    """A sign-in refused; `error` is OAuth 2's code (RFC 6749 5.2), the message says why."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


@dataclass(frozen=True)
class Scope:
    """A system scope: a resource type (or `*`) it reads."""

    resource_type: str
    text: str

    def covers(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)


def scope(text: str) -> Scope:
    """A system read scope; `SmartRefusal` (invalid_scope) for any other."""
    match = _SCOPE.fullmatch(text)
    if match is None:
        raise SmartRefusal(
            "invalid_scope",
            f"scope {text!r} is not a system read scope: ask for system/*.read,"
            " system/<Type>.read or their SMART v2 forms (system/*.rs)",
        )
    resource_type, access = match.groups()
    # v1's `read` and `*`, v2's letters: it must read (r) or search (s), and only that.
    if access not in ("read", "*") and not set(access) & {"r", "s"}:
        raise SmartRefusal("invalid_scope", f"scope {text!r} does not read anything")
    if access not in ("read", "*") and set(access) - {"r", "s"}:
        raise SmartRefusal("invalid_scope", f"scope {text!r}: rpm's FHIR API is read-only")
    return Scope(resource_type, text)


def scopes(texts: Iterable[str]) -> list[Scope]:
    return [scope(text) for text in texts]


def granted(asked: str, allowed: Collection[str], served: Collection[str]) -> list[str]:
    """The scopes a token request (space-separated) is granted: each must be one the
    client's registration covers and name a type rpm serves (or `*`)."""
    wanted = scopes(asked.split())
    if not wanted:
        raise SmartRefusal("invalid_scope", "scope is missing: ask for e.g. system/*.read")
    registered = scopes(allowed)
    for one in wanted:
        if one.resource_type != "*" and one.resource_type not in served:
            raise SmartRefusal(
                "invalid_scope",
                f"scope {one.text!r}: rpm serves {', '.join(sorted(served))} only",
            )
        if not any(
            r.resource_type == "*" or r.resource_type == one.resource_type for r in registered
        ):
            raise SmartRefusal(
                "invalid_scope",
                f"scope {one.text!r} is not granted to this client"
                f" (it may have {' '.join(allowed)})",
            )
    return [one.text for one in wanted]


def readable(granted_scopes: Iterable[str], served: Iterable[str]) -> set[str]:
    """The resource types served that granted scopes read."""
    parsed = scopes(granted_scopes)
    return {t for t in served if any(s.covers(t) for s in parsed)}


def check_jwks(jwks: Any) -> dict[str, Any]:
    """A JWK Set fit to register: public RSA or P-384 EC keys, each parseable, for RS384
    or ES384. A private key is refused: the client keeps it, rpm must never hold it."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError('a JWK Set is {"keys": [...]} with at least one key')
    for key in jwks["keys"]:
        if not isinstance(key, dict):
            raise ValueError("each key of the JWK Set is a JSON object")  # noqa: TRY004 (what a client sent)
        if "d" in key:
            raise ValueError("the JWK Set holds a private key: register the public key only")
        if key.get("kty") not in ("RSA", "EC") or (
            key["kty"] == "EC" and key.get("crv") != "P-384"
        ):
            raise ValueError("each key is RSA (for RS384) or EC on P-384 (for ES384)")
        if key.get("alg") not in (None, *ALGORITHMS):
            raise ValueError(f"a key's alg is {' or '.join(ALGORITHMS)}")
        try:
            jwt.PyJWK.from_dict(key, algorithm="RS384" if key["kty"] == "RSA" else "ES384")
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"a key of the JWK Set cannot be read: {exc}") from None
    return jwks


def assertion_issuer(assertion: str) -> str:
    """The client_id an assertion claims to come from (`iss`), before it is verified:
    which client's keys to verify it with."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise SmartRefusal("invalid_client", f"client_assertion is not a JWT: {exc}") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise SmartRefusal("invalid_client", "client_assertion has no iss (the client_id)")
    return issuer


@dataclass(frozen=True)
class Assertion:
    jti: str
    expires_at: datetime


def verify_assertion(
    assertion: str, jwks: dict[str, Any], client_id: str, token_url: str, now: datetime
) -> Assertion:
    """The assertion, verified: signed by a key of the client's set, for rpm's token
    URL, from this client (iss = sub), alive and not too long-lived. The caller checks
    its `jti` was not seen before."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise SmartRefusal("invalid_client", f"client_assertion is not a JWT: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise SmartRefusal(
            "invalid_client",
            f"client_assertion is signed {algorithm}: rpm takes {' or '.join(ALGORITHMS)}",
        )
    key = _key(jwks, header.get("kid"), algorithm)
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[algorithm],
            audience=token_url,
            issuer=client_id,
            leeway=LEEWAY,
            options={"require": ["exp", "iss", "sub", "aud", "jti"], "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise SmartRefusal("invalid_client", "client_assertion has expired") from None
    except jwt.InvalidAudienceError:
        raise SmartRefusal(
            "invalid_client", f"client_assertion's aud must be the token URL, {token_url}"
        ) from None
    except jwt.InvalidSignatureError:
        raise SmartRefusal(
            "invalid_client", "client_assertion's signature does not verify with the client's keys"
        ) from None
    except jwt.PyJWTError as exc:
        raise SmartRefusal("invalid_client", f"client_assertion is not valid: {exc}") from None
    if claims["sub"] != client_id:
        raise SmartRefusal(
            "invalid_client", "client_assertion's sub must be its iss, the client_id"
        )
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    if expires_at > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise SmartRefusal(
            "invalid_client", "client_assertion's exp is more than five minutes ahead"
        )
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise SmartRefusal("invalid_client", "client_assertion's jti must be a non-empty string")
    return Assertion(jti, expires_at)


def _key(jwks: dict[str, Any], kid: Any, algorithm: str) -> Any:
    """The key of the set the header names (by kid), or its only key of that type."""
    kty = "RSA" if algorithm == "RS384" else "EC"
    candidates = [
        k for k in jwks["keys"] if k.get("kty") == kty and (kid is None or k.get("kid") == kid)
    ]
    if len(candidates) != 1:
        raise SmartRefusal(
            "invalid_client",
            "no key of the client's JWK Set matches the assertion's kid and alg"
            if not candidates
            else "the client's JWK Set has several keys of this type: name one by kid",
        )
    return jwt.PyJWK.from_dict(candidates[0], algorithm=algorithm).key
