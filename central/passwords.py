"""Secrets the central server keeps only as hashes: operators' passwords (argon2id), boxes' broker
passwords (Mosquitto's own PBKDF2-SHA512 ``$7$`` form, so its password file is written from the
database), and API tokens (SHA-256: they are long random strings, a slow hash adds nothing)."""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's current defaults
MOSQUITTO_ITERATIONS = 101  # what mosquitto_passwd writes; the broker reads the count from the hash
MIN_PASSWORD_CHARS = 10


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@functools.cache
def _stand_in_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def spend_like_a_verify(password: str) -> None:
    """As long as verify_password takes, for a user that does not exist: the answer's time must not
    tell which user names exist."""
    verify_password(_stand_in_hash(), password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def new_secret(nbytes: int = 24) -> str:
    """A random secret as URL-safe text: broker passwords and API tokens."""
    return secrets.token_urlsafe(nbytes)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """``$7$101$<salt>$<hash>``: a line of Mosquitto's password file is ``user:`` and this."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, MOSQUITTO_ITERATIONS, 64)
    salt_text = base64.b64encode(salt).decode("ascii")
    return f"$7${MOSQUITTO_ITERATIONS}${salt_text}${base64.b64encode(digest).decode('ascii')}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
