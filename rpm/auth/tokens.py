"""Bearer tokens, browser sessions and API keys: random secrets kept only as hashes.

A token or key secret is 256 random bits, so SHA-256 is enough to keep it: a leaked
table gives nothing to guess, and a slow hash (kept for passwords) would only slow every
request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

API_KEY_PREFIX = "rpm_"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class NewApiKey:
    # Shown once; never stored.
    key: str
    prefix: str
    secret_hash: bytes


def new_api_key() -> NewApiKey:
    """`rpm_<prefix>_<secret>`: the prefix finds the row, the secret proves the holder."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewApiKey(f"{API_KEY_PREFIX}{prefix}_{secret}", prefix, token_hash(secret))


def split_api_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of something shaped like an API key, else None."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, _, secret = key[len(API_KEY_PREFIX) :].partition("_")
    if not prefix or not secret:
        return None
    return prefix, secret


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(token_hash(secret), stored_hash)
