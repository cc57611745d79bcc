"""Verifying and opening Akool's webhook callbacks: signature first, then AES, then the JSON."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from akool_async._constants import DEFAULT_TOLERANCE, MAX_BODY_BYTES
from akool_async._errors import InvalidInput, WebhookVerificationError
from akool_async._models import ImageStatus
from akool_async._webhook_crypto import (
    AES_KEY_LENGTHS,
    decrypt,
    encrypt,
    signature,
    signature_matches,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_BODY_BYTES",
    "WebhookEvent",
    "WebhookVerificationError",
    "WebhookVerifier",
]

_ENVELOPE_KEYS: Final = ("signature", "dataEncrypt", "timestamp", "nonce")
_MAX_FIELD_CHARS: Final = 16 * 1024


@attrs.frozen(kw_only=True)
class WebhookEvent:
    """What a verified callback says about a job.

    Attributes:
        id: The job's id (Akool's ``_id``).
        status: Its status: processing, completed or failed.
        type: Akool's kind of content, e.g. ``"image"``.
        url: The result's URL, when the status is completed.
        timestamp: When Akool sent it, in epoch milliseconds.
        nonce: The callback's nonce.
        signature: The callback's signature: the same for a repeated delivery of one callback.
        extra: Any other field of the decrypted payload.
    """

    id: str
    status: ImageStatus
    type: str | None = None
    url: str | None = None
    timestamp: int
    nonce: str
    signature: str
    extra: Mapping[str, Any] = attrs.field(factory=dict[str, Any], eq=False, repr=False)


class WebhookVerifier:
    """Verifies Akool's signed, encrypted callbacks and opens them.

    ```python
    verifier = WebhookVerifier(client_id, client_secret)
    event = verifier.verify(request_body)  # bytes, str, or the parsed JSON object
    ```

    Checks run in this order, so a forged request costs no decryption: the envelope's shape,
    the signature (compared in constant time), the timestamp against `tolerance`, then the
    AES-CBC decryption and the payload. Akool's signature is a SHA-1 over public values and
    the client id, not a MAC over a secret: it shows a callback was made for this account, and
    the decryption with the client secret shows it was made by someone who holds the secret.

    Args:
        client_id: The account's client id (part of the signature, and the AES IV: cut or
            space-padded to 16 bytes, as Akool's demo does).
        client_secret: The account's client secret: the AES key, 16, 24 or 32 bytes.
        tolerance: Seconds a callback's timestamp may be away from ``clock()``; None accepts any.
        clock: Seconds since the epoch now; `time.time` by default.

    Raises:
        InvalidInput: An empty client id, or a secret that is not 16, 24 or 32 bytes long.
        ImportError: ``cryptography`` is missing (``pip install 'akool-async[webhooks]'``).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        tolerance: float | None = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_arguments(client_id, client_secret, tolerance)
        self.client_id = client_id
        self._client_secret = client_secret
        self.tolerance = tolerance
        self._clock = clock
        # Fails here, with the install hint, rather than at the first callback.
        encrypt(b"", client_id=client_id, client_secret=client_secret)

    def __repr__(self) -> str:
        return f"WebhookVerifier(client_id={self.client_id!r}, tolerance={self.tolerance!r})"

    def verify(self, body: bytes | str | Mapping[str, Any]) -> WebhookEvent:
        """Check a callback and return what it says.

        Args:
            body: The request body as received (bytes or str), or its parsed JSON object.

        Returns:
            The event: the job's id, status, type and URL.

        Raises:
            WebhookVerificationError: The body is too large or not Akool's envelope, the
                signature does not match, the timestamp is outside the tolerance, the
                ciphertext does not open with this account's secret, or the payload is not a
                job status. Its ``reason`` says which.
        """
        envelope = _envelope(body)
        given = envelope["signature"]
        timestamp, nonce, data = envelope["timestamp"], envelope["nonce"], envelope["dataEncrypt"]
        expected = signature(self.client_id, timestamp, nonce, data)
        if not signature_matches(expected, given):
            raise WebhookVerificationError(
                "the callback's signature does not match: it was not made for this client id, "
                "or it was changed on the way",
                reason="signature",
            )
        self._check_time(timestamp)
        try:
            plaintext = decrypt(data, client_id=self.client_id, client_secret=self._client_secret)
        except ValueError as error:
            raise WebhookVerificationError(
                f"the callback does not decrypt with this account's client secret ({error})",
                reason="decrypt",
            ) from None
        return _event(plaintext, timestamp=timestamp, nonce=nonce, signature=given)

    def _check_time(self, timestamp: int) -> None:
        if self.tolerance is None:
            return
        skew = abs(self._clock() - timestamp / 1000)
        if skew > self.tolerance:
            raise WebhookVerificationError(
                f"the callback's timestamp is {skew:.0f} s away from this machine's clock, more "
                f"than the {self.tolerance:g} s allowed: a replay, or a clock that is wrong",
                reason="stale",
            )


def _check_arguments(client_id: object, client_secret: object, tolerance: object) -> None:
    if not isinstance(client_id, str) or not client_id:
        raise InvalidInput("client_id must be a non-empty string: the account's client id")
    if not isinstance(client_secret, str) or len(client_secret.encode()) not in AES_KEY_LENGTHS:
        raise InvalidInput(
            "client_secret must be a string of 16, 24 or 32 bytes in UTF-8 (Akool's are 24): "
            "it is the AES key of the callbacks"
        )
    if tolerance is not None and not (
        isinstance(tolerance, int | float) and not math.isnan(tolerance) and tolerance > 0
    ):
        raise InvalidInput(f"tolerance must be a number of seconds above 0 (got {tolerance!r})")


def _parsed(body: bytes | str | Mapping[str, Any]) -> object:
    """The body as parsed JSON, refusing what is too large or not JSON."""
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_BODY_BYTES:
            raise WebhookVerificationError(
                f"the callback is {len(body)} bytes, more than the {MAX_BODY_BYTES} accepted",
                reason="too_large",
            )
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError(
                "the callback is not UTF-8 JSON", reason="malformed"
            ) from None
    if not isinstance(body, str):
        return body
    if len(body) > MAX_BODY_BYTES:
        raise WebhookVerificationError(
            f"the callback is longer than the {MAX_BODY_BYTES} bytes accepted", reason="too_large"
        )
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise WebhookVerificationError(
            f"the callback is not JSON ({error.msg})", reason="malformed"
        ) from None


def _envelope(body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    parsed = _parsed(body)
    if not isinstance(parsed, Mapping):
        raise WebhookVerificationError(
            "the callback is not a JSON object with signature, dataEncrypt, timestamp and nonce",
            reason="malformed",
        )
    fields: Mapping[str, Any] = parsed  # pyright: ignore[reportUnknownVariableType]
    missing = [key for key in _ENVELOPE_KEYS if key not in fields]
    if missing:
        raise WebhookVerificationError(
            f"the callback lacks {', '.join(missing)}: not Akool's envelope", reason="malformed"
        )
    timestamp = fields["timestamp"]
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise WebhookVerificationError(
            "the callback's timestamp is not epoch milliseconds", reason="malformed"
        )
    texts = {key: fields[key] for key in ("signature", "dataEncrypt", "nonce")}
    for key, value in texts.items():
        if not isinstance(value, str) or len(value) > _MAX_FIELD_CHARS:
            raise WebhookVerificationError(
                f"the callback's {key} is not a string of reasonable length", reason="malformed"
            )
    return {**texts, "timestamp": timestamp}


def _event(plaintext: bytes, *, timestamp: int, nonce: str, signature: str) -> WebhookEvent:
    try:
        payload = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookVerificationError(
            "the callback decrypts to something that is not JSON", reason="payload"
        ) from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError(
            "the callback's payload is not a JSON object", reason="payload"
        )
    fields: dict[str, Any] = payload  # pyright: ignore[reportUnknownVariableType]
    job_id, status = fields.get("_id"), fields.get("status")
    if not isinstance(job_id, str) or not job_id:
        raise WebhookVerificationError("the callback's payload has no job _id", reason="payload")
    try:
        if isinstance(status, bool) or not isinstance(status, int):
            raise ValueError(status)  # noqa: TRY004, TRY301 - one refusal for every bad status
        image_status = ImageStatus(status)
    except ValueError:
        raise WebhookVerificationError(
            f"the callback's payload has no job status Akool defines (got {status!r})",
            reason="payload",
        ) from None
    kind, url = fields.get("type"), fields.get("url")
    return WebhookEvent(
        id=job_id,
        status=image_status,
        type=kind if isinstance(kind, str) else None,
        url=url if isinstance(url, str) and url else None,
        timestamp=timestamp,
        nonce=nonce,
        signature=signature,
        extra={
            key: value
            for key, value in fields.items()
            if key not in {"_id", "status", "type", "url"}
        },
    )
