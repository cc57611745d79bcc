"""Akool's webhook envelope: a SHA-1 signature over four strings and AES-CBC over the JSON body.

Both directions live here: the emulator encrypts and signs callbacks exactly as Akool does, and
the SDK's webhook verifier decrypts and checks them. The algorithm, from Akool's webhook docs and
its official demo code:

- ``signature = sha1("".join(sorted([client_id, str(timestamp), nonce, data_encrypt])))`` as
  lowercase hex; a plain sort of the four strings, joined with no separator, UTF-8.
- ``data_encrypt = base64(AES-CBC(key=client_secret, iv=client_id cut or space-padded to 16
  bytes, PKCS#7 with 16-byte blocks))``. The key is 16, 24 or 32 bytes (Akool's are 24).

AES comes from `cryptography`, an optional dependency (the ``webhooks`` and ``emulator`` extras):
it is imported when a function needs it, so ``import akool_async`` works without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher
    from cryptography.hazmat.primitives.ciphers.modes import CBC
    from cryptography.hazmat.primitives.padding import PKCS7

from ._errors import MissingDependency

__all__ = [
    "AES_KEY_LENGTHS",
    "IV_LENGTH",
    "decrypt",
    "decrypt_blocks",
    "encrypt",
    "iv_for",
    "make_envelope",
    "signature",
    "signature_matches",
    "unpad",
]

AES_KEY_LENGTHS: Final = (16, 24, 32)
"""The key lengths AES accepts, in bytes; a ``client_secret`` must encode to one of them."""
IV_LENGTH: Final = 16
"""AES-CBC's IV and block length, in bytes."""

_INSTALL_HINT: Final = (
    "Akool webhooks need the 'cryptography' package for AES, which is not installed: install "
    "the package's webhooks extra (pip install '.[webhooks]' from a checkout) or cryptography"
)


def signature(client_id: str, timestamp: int | str, nonce: str, data_encrypt: str) -> str:
    """Akool's signature of a webhook envelope.

    Args:
        client_id: The account's client id.
        timestamp: The envelope's ``timestamp`` (milliseconds), as sent; an int is written in
            decimal.
        nonce: The envelope's ``nonce``.
        data_encrypt: The envelope's ``dataEncrypt``, exactly as sent (base64 text).

    Returns:
        The lowercase hex SHA-1 of the four strings, sorted and joined with no separator.

    Raises:
        UnicodeEncodeError: A string holds a lone surrogate, which UTF-8 cannot encode (the
            verifier refuses such fields before it signs).
    """
    parts = sorted([client_id, str(timestamp), nonce, data_encrypt])
    # sha1 is Akool's choice, not ours: the signature must match what Akool sends.
    return hashlib.sha1("".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def signature_matches(expected_hex: str, given: object) -> bool:
    """Compare a computed signature with a received one in constant time.

    Args:
        expected_hex: The signature computed with `signature` (lowercase hex).
        given: Whatever the request carried as ``signature``; anything but a string of ASCII
            characters is a mismatch, never an error.

    Returns:
        True when ``given`` is exactly ``expected_hex``.
    """
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(expected_hex.encode("ascii"), given.encode("ascii"))


def iv_for(client_id: str) -> bytes:
    """The AES IV Akool derives from a client id.

    Args:
        client_id: The account's client id.

    Returns:
        The id's UTF-8 bytes cut to their first 16, or padded with spaces to 16 when shorter.
    """
    return client_id.encode("utf-8")[:IV_LENGTH].ljust(IV_LENGTH, b" ")


def _cipher(client_id: str, client_secret: str) -> Cipher[CBC]:
    key = client_secret.encode("utf-8")
    if len(key) not in AES_KEY_LENGTHS:
        # The length is safe to say; the value never is.
        raise ValueError(
            "client_secret must be 16, 24 or 32 bytes in UTF-8 for AES "
            f"(Akool's are 24; got {len(key)} bytes)"
        )
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.algorithms import AES  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.modes import CBC  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependency(_INSTALL_HINT) from exc
    return Cipher(AES(key), CBC(iv_for(client_id)))


def _pkcs7() -> PKCS7:
    try:
        from cryptography.hazmat.primitives.padding import PKCS7  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependency(_INSTALL_HINT) from exc
    return PKCS7(IV_LENGTH * 8)


def encrypt(plaintext: bytes, *, client_id: str, client_secret: str) -> str:
    """Encrypt a callback body as Akool does.

    Args:
        plaintext: The bytes to encrypt (Akool sends a JSON object).
        client_id: The account's client id; it gives the IV.
        client_secret: The account's client secret; its UTF-8 bytes are the AES key.

    Returns:
        The ciphertext in standard base64: the envelope's ``dataEncrypt``.

    Raises:
        ValueError: ``client_secret`` is not 16, 24 or 32 bytes long in UTF-8.
        MissingDependency: ``cryptography`` is not installed (also an ``ImportError``).
    """
    cipher = _cipher(client_id, client_secret)
    padder = _pkcs7().padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = cipher.encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(ciphertext).decode("ascii")


def decrypt(data_encrypt: str, *, client_id: str, client_secret: str) -> bytes:
    """Decrypt an envelope's ``dataEncrypt``.

    Args:
        data_encrypt: The base64 ciphertext, as received.
        client_id: The account's client id; it gives the IV.
        client_secret: The account's client secret; its UTF-8 bytes are the AES key.

    Returns:
        The plaintext bytes (a JSON object, from Akool).

    Raises:
        ValueError: ``data_encrypt`` is not base64, not whole 16-byte blocks, or does not end in
            valid padding (a wrong key or id usually shows up as bad padding); or
            ``client_secret`` is not 16, 24 or 32 bytes long.
        MissingDependency: ``cryptography`` is not installed (also an ``ImportError``).
    """
    return unpad(decrypt_blocks(data_encrypt, client_id=client_id, client_secret=client_secret))


def decrypt_blocks(data_encrypt: str, *, client_id: str, client_secret: str) -> bytes:
    """Decrypt an envelope's ``dataEncrypt`` but leave the padding on: whole 16-byte blocks.

    With `unpad`, this is `decrypt` in two steps, for a caller that must do the same work
    whether or not the padding turns out valid (see the webhook verifier).

    Args:
        data_encrypt: The base64 ciphertext, as received.
        client_id: The account's client id; it gives the IV.
        client_secret: The account's client secret; its UTF-8 bytes are the AES key.

    Returns:
        The decrypted blocks, padding included.

    Raises:
        ValueError: ``data_encrypt`` is not base64 or not whole 16-byte blocks; or
            ``client_secret`` is not 16, 24 or 32 bytes long.
        MissingDependency: ``cryptography`` is not installed (also an ``ImportError``).
    """
    cipher = _cipher(client_id, client_secret)
    try:
        ciphertext = base64.b64decode(data_encrypt, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise ValueError("dataEncrypt is not valid base64") from None
    if not ciphertext or len(ciphertext) % IV_LENGTH:
        raise ValueError(
            f"dataEncrypt must decode to whole {IV_LENGTH}-byte AES blocks "
            f"(got {len(ciphertext)} bytes)"
        )
    decryptor = cipher.decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def unpad(padded: bytes) -> bytes:
    """Remove the PKCS#7 padding (16-byte blocks) from decrypted blocks.

    Args:
        padded: What `decrypt_blocks` returned.

    Returns:
        The plaintext.

    Raises:
        ValueError: The padding is not valid PKCS#7.
        MissingDependency: ``cryptography`` is not installed (also an ``ImportError``).
    """
    unpadder = _pkcs7().unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # cryptography's message says nothing secret, but ours says what it likely means.
        raise ValueError(
            "dataEncrypt does not decrypt to valid PKCS#7 padding: wrong client_id or "
            "client_secret, or a damaged message"
        ) from None


def make_envelope(
    payload: Mapping[str, Any],
    *,
    client_id: str,
    client_secret: str,
    timestamp_ms: int,
    nonce: str,
) -> dict[str, Any]:
    """Build the JSON body Akool POSTs to a ``webhookUrl``.

    Args:
        payload: The callback's content, such as ``{"_id": ..., "status": 3, "type": "image",
            "url": ...}``; it is JSON-encoded compactly and encrypted.
        client_id: The account's client id.
        client_secret: The account's client secret.
        timestamp_ms: Milliseconds since the epoch.
        nonce: A decimal string.

    Returns:
        ``{"signature", "dataEncrypt", "timestamp", "nonce"}``, with ``timestamp`` an int.

    Raises:
        TypeError: ``payload`` holds something JSON cannot encode.
        ValueError: ``client_secret`` is not 16, 24 or 32 bytes long in UTF-8.
        MissingDependency: ``cryptography`` is not installed (also an ``ImportError``).
    """
    plaintext = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    data_encrypt = encrypt(plaintext, client_id=client_id, client_secret=client_secret)
    return {
        "signature": signature(client_id, timestamp_ms, nonce, data_encrypt),
        "dataEncrypt": data_encrypt,
        "timestamp": int(timestamp_ms),
        "nonce": nonce,
    }
