"""The central server's Ed25519 signing key pair: what every command and manifest is signed with.

The private key is written once by ``loa-central init`` with mode 0600 (readable by the service
alone), through a temporary file, fsync and rename; it is never printed.  Boxes get the public key
(``loa-central device add``) and verify with it (protocol.commands, protocol.manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from central.files import write_atomically
from foundation.errors import ConfigError


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    kid: str  # a short id of the public key, so a rotation shows in the tokens' headers

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return self.public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _kid(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return raw.hex()[:16]


def create_key_pair(private_path: Path, public_path: Path) -> SigningKey:
    """A new key pair written to the two files; refuses to replace an existing private key."""
    if private_path.exists():
        raise ConfigError([f"{private_path}: a signing key already exists; it is never replaced by init"])
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_atomically(private_path, pem, mode=0o600)
    key = SigningKey(private, _kid(private.public_key()))
    write_atomically(public_path, key.public_pem(), mode=0o644)
    return key


def load_signing_key(private_path: Path) -> SigningKey:
    """The key pair from its private key file; ConfigError naming the file (never its content)."""
    try:
        mode = private_path.stat().st_mode & 0o777
        private = load_pem_private_key(private_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(
            [f"{private_path}: cannot read the signing key ({type(error).__name__}); run loa-central init"]
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError([f"{private_path}: is not an Ed25519 private key"])
    if mode & 0o077:
        raise ConfigError([f"{private_path}: mode {mode:o}: must be readable by the service alone (0600)"])
    return SigningKey(private, _kid(private.public_key()))
