"""Encryption at rest for run artefacts (checkpoints, redacted data): AES-256-GCM, authenticated.

File layout: ``TRUSTFM-AESGCM-1\\n`` (16-byte header, also the associated data),
a 12-byte random nonce, then the ciphertext with its 16-byte tag. Any change
to any byte, or a wrong key, fails the tag check and nothing is returned.
Files are written to a temporary name and renamed, so a crash never leaves a
partial file under the real name.

The key (32 bytes) comes from ``$TRUSTFM_ENCRYPTION_KEY`` (hex or base64) or
from a key file (same encodings) named by the caller or by
``$TRUSTFM_ENCRYPTION_KEY_FILE``. ``new_key_file(path)`` makes one (mode 600).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from trustfm.errors import ConfigError

HEADER = b"TRUSTFM-AESGCM-1\n"[:16]
NONCE_BYTES = 12


def _decode_key(text: str, source: str) -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise ConfigError(f"{source}: not a 32-byte key in hex or base64 (make one with `trustfm keygen --encryption`)")


def load_key(key_file: str | Path | None = None) -> bytes:
    """The encryption key, from ``key_file``, $TRUSTFM_ENCRYPTION_KEY or $TRUSTFM_ENCRYPTION_KEY_FILE."""
    if key_file is None and os.environ.get("TRUSTFM_ENCRYPTION_KEY"):
        return _decode_key(os.environ["TRUSTFM_ENCRYPTION_KEY"], "$TRUSTFM_ENCRYPTION_KEY")
    key_file = key_file or os.environ.get("TRUSTFM_ENCRYPTION_KEY_FILE")
    if not key_file:
        raise ConfigError("no encryption key: set $TRUSTFM_ENCRYPTION_KEY or $TRUSTFM_ENCRYPTION_KEY_FILE, or give a "
                          "key file (make one with `trustfm keygen --encryption PATH`)")
    path = Path(key_file)
    if not path.is_file():
        raise ConfigError(f"encryption key file {path} does not exist")
    return _decode_key(path.read_text(encoding="utf-8"), str(path))


def new_key_file(path: str | Path) -> Path:
    """Write a new random 32-byte key (hex) to ``path`` with mode 600; refuses to overwrite."""
    from trustfm.fileio import write_text_atomic

    path = Path(path)
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting a key")
    return write_text_atomic(path, os.urandom(32).hex() + "\n", mode=0o600)


def is_encrypted(path: str | Path) -> bool:
    try:
        with Path(path).open("rb") as handle:
            return handle.read(len(HEADER)) == HEADER
    except (IsADirectoryError, FileNotFoundError):
        return False


def encrypt_bytes(data: bytes, key: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return HEADER + nonce + AESGCM(key).encrypt(nonce, data, HEADER)


def decrypt_bytes(blob: bytes, key: bytes, *, source: str = "data") -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(HEADER):
        raise ConfigError(f"{source} is not a trustfm-encrypted file")
    if len(blob) < len(HEADER) + NONCE_BYTES + 16:  # header, nonce and the 16-byte GCM tag at the least
        raise ConfigError(f"{source}: the encrypted file was cut short")
    nonce = blob[len(HEADER):len(HEADER) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(HEADER) + NONCE_BYTES:], HEADER)
    except InvalidTag:
        raise ConfigError(f"{source}: wrong encryption key, or the file was changed or cut short") from None


def write_encrypted(path: str | Path, data: bytes, key: bytes) -> Path:
    """Encrypt ``data`` into ``path`` atomically (temporary file, fsync, rename)."""
    from trustfm.fileio import write_bytes_atomic

    return write_bytes_atomic(path, encrypt_bytes(data, key))


def read_decrypted(path: str | Path, key: bytes | None = None) -> bytes:
    """The plaintext of an encrypted file (the key is loaded from the environment when not given)."""
    path = Path(path)
    return decrypt_bytes(path.read_bytes(), key if key is not None else load_key(), source=str(path))
