"""SMART Backend Services' pure checks: scopes, JWK Sets, and client assertions signed
RS384 and ES384 with keys made here (expired, mis-signed, for another audience...)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
import pytest

from rpm.auth import smart
from tests.smart_keys import ClientKey

TOKEN_URL = "https://rpm.example/fhir/auth/token"
SERVED = ("Patient", "Observation", "Device", "Flag")


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_a_good_assertion_verifies(algorithm: str) -> None:
    key = ClientKey(algorithm)
    smart.check_jwks(key.jwks)
    verified = smart.verify_assertion(
        key.assertion("c-1", TOKEN_URL), key.jwks, "c-1", TOKEN_URL, _now()
    )
    assert verified.jti
    assert smart.assertion_issuer(key.assertion("c-1", TOKEN_URL)) == "c-1"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"exp": int(time.time()) + 900}, "more than five minutes"),
        ({"aud": "https://elsewhere.example/token"}, "aud must be the token URL"),
        ({"sub": "someone-else"}, "sub must be its iss"),
        ({"jti": None}, "jti"),
        ({"iss": "c-2", "sub": "c-2"}, "not valid"),
    ],
)
def test_a_bad_assertion_is_refused_saying_why(overrides: dict[str, object], says: str) -> None:
    key = ClientKey()
    assertion = key.assertion("c-1", TOKEN_URL, **overrides)
    with pytest.raises(smart.SmartRefusal, match=says) as refused:
        smart.verify_assertion(assertion, key.jwks, "c-1", TOKEN_URL, _now())
    assert refused.value.error == "invalid_client"


def test_a_mis_signed_assertion_is_refused() -> None:
    registered, other = ClientKey(kid="k"), ClientKey(kid="k")
    with pytest.raises(smart.SmartRefusal, match="signature"):
        smart.verify_assertion(
            other.assertion("c-1", TOKEN_URL), registered.jwks, "c-1", TOKEN_URL, _now()
        )


def test_only_rs384_and_es384_are_taken() -> None:
    token = jwt.encode({"iss": "c-1"}, "a shared secret of enough length", algorithm="HS256")
    with pytest.raises(smart.SmartRefusal, match="HS256"):
        smart.verify_assertion(token, ClientKey().jwks, "c-1", TOKEN_URL, _now())


def test_a_private_key_or_another_curve_is_not_registered() -> None:
    key = ClientKey()
    private = {"keys": [{**key.jwks["keys"][0], "d": "secret"}]}
    with pytest.raises(ValueError, match="private"):
        smart.check_jwks(private)
    with pytest.raises(ValueError, match="P-384"):
        smart.check_jwks({"keys": [{**key.jwks["keys"][0], "crv": "P-256"}]})
    with pytest.raises(ValueError, match="keys"):
        smart.check_jwks({"keys": []})


def test_scopes_v1_and_v2_read_only_within_the_registration() -> None:
    assert smart.granted("system/*.read", ["system/*.read"], SERVED) == ["system/*.read"]
    assert smart.granted("system/Observation.rs system/Patient.read", ["system/*.rs"], SERVED) == [
        "system/Observation.rs", "system/Patient.read",
    ]  # fmt: skip
    assert smart.readable(["system/Observation.read"], SERVED) == {"Observation"}
    assert smart.readable(["system/*.rs"], SERVED) == set(SERVED)
    for asked, says in [
        ("system/*.read", "not granted"),
        ("system/Encounter.read", "serves"),
        ("system/Observation.write", "not a system read scope"),
        ("system/Observation.cruds", "read-only"),
        ("patient/*.read", "not a system read scope"),
        ("", "missing"),
    ]:
        with pytest.raises(smart.SmartRefusal, match=says) as refused:
            smart.granted(asked, ["system/Observation.read"], SERVED)
        assert refused.value.error == "invalid_scope"
