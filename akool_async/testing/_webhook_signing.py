"""Akool's webhook envelope as the emulator sends it: AES-CBC over the JSON, then a SHA-1 signature.

Written from Akool's webhook docs and its official demo code, apart from the SDK's verifier (which
opens these envelopes) so that a mistake in one is caught by the other; the tests check both
against a third, hand-chained implementation (``tests/akool_reference.py``). What Akool does:

- ``dataEncrypt``: the callback's JSON, PKCS#7-padded to 16-byte blocks, encrypted with AES-CBC
  and written in standard base64. The key is the client secret's UTF-8 bytes (16, 24 or 32 of
  them; Akool's secrets are 24). The IV is the client id's UTF-8 bytes, cut to the first 16 or
  padded with spaces up to 16.
- ``signature``: the lowercase hex SHA-1 of four strings (the client id, the timestamp in
  decimal, the nonce and ``dataEncrypt``) sorted as plain strings and joined with nothing between.

AES is `cryptography`'s, from the ``emulator`` extra, imported when a signer is built.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from akool_async.testing._errors import EmulatorConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher
    from cryptography.hazmat.primitives.ciphers.modes import CBC

__all__ = ["WebhookSigner"]

_AES_BLOCK_BYTES: Final = 16
_AES_KEY_BYTES: Final = (16, 24, 32)


class WebhookSigner:
    """Seals callbacks for one account the way Akool does: encrypted, then signed.

    Args:
        client_id: The account's client id: the AES IV, and one of the signed strings.
        client_secret: The account's client secret: the AES key.

    Raises:
        EmulatorConfigError: ``client_secret`` is not 16, 24 or 32 bytes long in UTF-8 (the
            message gives its length, never its value).
        ImportError: ``cryptography`` (the ``emulator`` extra) is not installed.
    """

    def __init__(self, *, client_id: str, client_secret: str) -> None:
        key = client_secret.encode("utf-8")
        if len(key) not in _AES_KEY_BYTES:
            raise EmulatorConfigError(
                "client_secret must be 16, 24 or 32 bytes in UTF-8 for AES "
                f"(Akool's are 24; got {len(key)} bytes)"
            )
        self._client_id = client_id
        self._cipher = _aes_cbc(key, iv=_iv(client_id))

    def __repr__(self) -> str:
        # The key is the account's secret: never shown.
        return "WebhookSigner(...)"

    def encrypt(self, plaintext: bytes) -> str:
        """``plaintext`` padded, encrypted and base64-encoded: an envelope's ``dataEncrypt``."""
        from cryptography.hazmat.primitives.padding import PKCS7  # noqa: PLC0415 - optional extra

        padder = PKCS7(_AES_BLOCK_BYTES * 8).padder()
        encryptor = self._cipher.encryptor()
        blocks = encryptor.update(padder.update(plaintext) + padder.finalize())
        return base64.b64encode(blocks + encryptor.finalize()).decode("ascii")

    def sign(self, timestamp_ms: int, nonce: str, data_encrypt: str) -> str:
        """The ``signature`` Akool sends with ``timestamp``, ``nonce`` and ``dataEncrypt``."""
        signed = "".join(sorted((self._client_id, str(timestamp_ms), nonce, data_encrypt)))
        # SHA-1 is Akool's choice; a receiver checks exactly this digest.
        return hashlib.sha1(signed.encode("utf-8"), usedforsecurity=False).hexdigest()

    def envelope(
        self, payload: Mapping[str, Any], *, timestamp_ms: int, nonce: str
    ) -> dict[str, Any]:
        """The JSON body Akool POSTs to a ``webhookUrl`` for ``payload``.

        Args:
            payload: What the callback says, e.g. ``{"_id": ..., "status": 3, "type": "image",
                "url": ...}``; JSON-encoded compactly, then encrypted.
            timestamp_ms: Milliseconds since the epoch, sent as an integer.
            nonce: A short decimal string.

        Returns:
            ``{"signature", "dataEncrypt", "timestamp", "nonce"}``.

        Raises:
            TypeError: ``payload`` holds something JSON cannot encode.
        """
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        data_encrypt = self.encrypt(text.encode("utf-8"))
        return {
            "signature": self.sign(timestamp_ms, nonce, data_encrypt),
            "dataEncrypt": data_encrypt,
            "timestamp": int(timestamp_ms),
            "nonce": nonce,
        }


def _iv(client_id: str) -> bytes:
    """The client id's UTF-8 bytes, cut or space-padded to one AES block."""
    return client_id.encode("utf-8")[:_AES_BLOCK_BYTES].ljust(_AES_BLOCK_BYTES, b" ")


def _aes_cbc(key: bytes, *, iv: bytes) -> Cipher[CBC]:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher  # noqa: PLC0415 - optional extra
        from cryptography.hazmat.primitives.ciphers.algorithms import AES  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.modes import CBC  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "the Akool emulator's webhooks need cryptography: pip install 'akool-async[emulator]'"
        ) from exc
    return Cipher(AES(key), CBC(iv))
