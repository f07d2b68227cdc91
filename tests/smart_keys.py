"""A Backend Services client's keys and signed assertions, for tests: what an EHR does
with its own key (made here with `cryptography`, signed with PyJWT)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class ClientKey:
    """A key pair of RS384 or ES384; `jwks` is its public half as a JWK Set."""

    algorithm: str = "ES384"
    kid: str = field(default_factory=lambda: f"key-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        if self.algorithm == "RS384":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP384R1())
            public = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwks = {"keys": [{**public, "kid": self.kid, "alg": self.algorithm}]}

    def assertion(self, client_id: str, token_url: str, **overrides: Any) -> str:
        """A client assertion as the Backend Services profile has it; `overrides`
        changes or (with None) removes claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
            "jti": str(uuid.uuid4()),
        }  # fmt: skip
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid})
