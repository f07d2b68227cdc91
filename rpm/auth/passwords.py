"""Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended set),
rehashed at sign-in when those parameters change."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a wrong username takes as long
# as a wrong password and does not tell which accounts exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


class WeakPassword(Exception):
    """The message says what a password needs."""


def check_strength(password: str, username: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")
    if username.lower() in password.lower():
        raise WeakPassword("a password must not contain the username")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored_hash: str | None, password: str) -> bool:
    """Whether the password matches; the same work when there is no hash to match."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
