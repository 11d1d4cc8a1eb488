"""Thin wrappers over ``cryptography`` for the primitives koble builds on.

Every failure is turned into :class:`~koble.errors.CryptoError` with no detail, so that
nothing about keys or ciphertexts leaks through error messages.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from koble.errors import CryptoError

KEY_BYTES = 32
BLOCK_BYTES = 16
NONCE_BYTES = 12


def aes_ecb_into(key: bytes, blocks: memoryview, out: memoryview, *, decrypt: bool = False) -> None:
    """AES-256 (or its inverse) of every 16-byte block of ``blocks``, written into ``out``.

    ``out`` must be at least 15 bytes longer than ``blocks`` (OpenSSL's requirement). Writing
    into a caller's buffer avoids allocating and page-faulting a fresh result object, which
    costs more than the cipher itself on large columns.
    """
    if len(key) != KEY_BYTES or blocks.nbytes % BLOCK_BYTES or out.nbytes < blocks.nbytes + 15:
        raise CryptoError()
    mode = Cipher(algorithms.AES(key), modes.ECB())
    context = mode.decryptor() if decrypt else mode.encryptor()
    written = context.update_into(blocks, out)
    context.finalize()
    if written != blocks.nbytes:
        raise CryptoError()


def hkdf_sha256(key: bytes, *, info: bytes, salt: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def scrypt_key(passphrase: bytes, *, salt: bytes, n: int, r: int, p: int) -> bytes:
    """A 32-byte key from a passphrase with scrypt (RFC 7914)."""
    try:
        return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase)
    except (ValueError, TypeError):
        raise CryptoError() from None


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes | bytearray, aad: bytes) -> bytes:
    """AES-256-GCM encryption."""
    if len(key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise CryptoError()
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM decryption; any failure is an uninformative :class:`CryptoError`."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError, TypeError):
        raise CryptoError() from None
