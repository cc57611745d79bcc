"""Verifying and opening Akool's webhook callbacks: signature first, then AES, then the JSON.

Every input is bounded before it is used (the body's size, the JSON's depth and numbers, each
field's type, length and alphabet), so whatever arrives, the only error is
`WebhookVerificationError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from akool_async._bounded_json import UnreadableJSON
from akool_async._bounded_json import load as load_json
from akool_async._constants import DEFAULT_TOLERANCE, MAX_BODY_BYTES
from akool_async._errors import InvalidInput, WebhookVerificationError
from akool_async._models import ImageStatus
from akool_async._webhook_crypto import (
    AES_KEY_LENGTHS,
    decrypt_blocks,
    encrypt,
    signature,
    signature_matches,
    unpad,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_BODY_BYTES",
    "WebhookEvent",
    "WebhookVerificationError",
    "WebhookVerifier",
]

_ENVELOPE_KEYS: Final = ("signature", "dataEncrypt", "timestamp", "nonce")
_MAX_DATA_CHARS: Final = 16 * 1024
"""Base64 of 12 KiB: dozens of times a callback's payload."""
_MAX_SIGNATURE_CHARS: Final = 128
_MAX_NONCE_CHARS: Final = 256
_MAX_ID_CHARS: Final = 128
_MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""The last millisecond of the year 9999, the end of `datetime`'s range."""
_MAX_TIMESTAMP_DIGITS: Final = len(str(_MAX_TIMESTAMP_MS))
_UNOPENED: Final = (
    "the callback does not decrypt with this account's client secret into a job status: a "
    "wrong client_secret, or a forged or damaged callback"
)
"""The one message for every callback whose signature matched but whose content is unusable.

Bad base64, bad padding, text that is not UTF-8 or not JSON, a payload without a job id or
status: all the same refusal, so an answer never says how far the decryption got. Akool's
signature is not a secret (anyone with the client id can compute it), and a CBC receiver that
tells bad padding apart from a bad payload decrypts any captured callback for its attacker.
"""


class _Unusable(ValueError):
    """A decrypted payload that is not a job status (one of the refusals of `_UNOPENED`)."""


@attrs.frozen(kw_only=True)
class _Envelope:
    """The four fields of a callback, each checked for type, length and alphabet."""

    signature: str
    data: str
    nonce: str
    timestamp: int
    timestamp_text: str


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

    Checks run in this order, so a forged request costs no decryption: the envelope's shape
    (every field bounded in type, length and alphabet before use), the signature (compared in
    constant time), the timestamp against `tolerance`, then the AES-CBC decryption and the
    payload. Akool's signature is a SHA-1 over public values and the client id, not a MAC over
    a secret: it shows a callback was made for this account, and the decryption with the client
    secret shows it was made by someone who holds the secret. Since anyone with the client id
    can sign, every failure of the decryption or the payload is one and the same refusal.

    Args:
        client_id: The account's client id (part of the signature, and the AES IV: cut or
            space-padded to 16 bytes, as Akool's demo does).
        client_secret: The account's client secret: the AES key, 16, 24 or 32 bytes.
        tolerance: Seconds a callback's timestamp may be away from ``clock()``; None accepts any.
        clock: Seconds since the epoch now; `time.time` by default.

    Raises:
        InvalidInput: An empty client id, or a secret that is not 16, 24 or 32 bytes long.
        MissingDependency: ``cryptography`` is missing (the ``webhooks`` extra); an
            ``ImportError`` too.
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
            WebhookVerificationError: The only error, whatever ``body`` holds. Its ``reason``
                says why: ``too_large`` (over `MAX_BODY_BYTES`), ``malformed`` (not Akool's
                envelope: not JSON, too deep, a field of the wrong type, length or alphabet),
                ``signature`` (it does not match), ``stale`` (the timestamp is outside the
                tolerance), or ``decrypt`` for everything after that: the ciphertext does not
                open with this account's secret, or what it opens to is not a job status. That
                last reason has one message whatever went wrong, so it cannot be used as a
                decryption oracle.
        """
        envelope = _envelope(body)
        expected = signature(self.client_id, envelope.timestamp_text, envelope.nonce, envelope.data)
        if not signature_matches(expected, envelope.signature):
            raise WebhookVerificationError(
                "the callback's signature does not match: it was not made for this client id, "
                "or it was changed on the way",
                reason="signature",
            )
        self._check_time(envelope.timestamp)
        return self._open(envelope)

    def _open(self, envelope: _Envelope) -> WebhookEvent:
        """Decrypt a callback whose signature matched, and read its payload.

        Every failure is the same error, and the work is the same with good padding as with
        bad: the payload is read either way. Stopping at bad padding made it 4.6 us faster than
        a padding that is good around text that is not JSON, a timing oracle; what remains is
        about 1 us, the exception cryptography raises for bad padding.
        """
        try:
            # Bad base64 or a partial block says nothing about the plaintext: stop at once.
            padded = decrypt_blocks(
                envelope.data, client_id=self.client_id, client_secret=self._client_secret
            )
        except ValueError:
            raise WebhookVerificationError(_UNOPENED, reason="decrypt") from None
        try:
            plaintext, padding_valid = unpad(padded), True
        except ValueError:
            plaintext, padding_valid = padded, False
        try:
            event = _event(plaintext, envelope)
        except ValueError:  # not UTF-8, not JSON, no job status: see _event
            event = None
        if event is None or not padding_valid:
            raise WebhookVerificationError(_UNOPENED, reason="decrypt") from None
        return event

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
    if not isinstance(client_id, str) or not client_id or not _is_utf8(client_id):
        raise InvalidInput(
            "client_id must be a non-empty string of UTF-8 text: the account's client id"
        )
    if (
        not isinstance(client_secret, str)
        or not _is_utf8(client_secret)
        or len(client_secret.encode()) not in AES_KEY_LENGTHS
    ):
        raise InvalidInput(
            "client_secret must be a string of 16, 24 or 32 bytes in UTF-8 (Akool's are 24): "
            "it is the AES key of the callbacks"
        )
    if tolerance is not None and not (
        isinstance(tolerance, int | float) and not math.isnan(tolerance) and tolerance > 0
    ):
        raise InvalidInput(f"tolerance must be a number of seconds above 0 (got {tolerance!r})")


def _parsed(body: bytes | str | Mapping[str, Any]) -> object:
    """The body as parsed JSON, refusing what is too large, too deep or not JSON."""
    if isinstance(body, bytes | bytearray | memoryview):
        size = memoryview(body).nbytes
        if size > MAX_BODY_BYTES:
            raise WebhookVerificationError(
                f"the callback is {size} bytes, more than the {MAX_BODY_BYTES} accepted",
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
        return load_json(body)
    except UnreadableJSON as error:
        raise WebhookVerificationError(f"the callback is {error}", reason="malformed") from None


def _envelope(body: bytes | str | Mapping[str, Any]) -> _Envelope:
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
    timestamp, timestamp_text = _timestamp(fields["timestamp"])
    return _Envelope(
        signature=_text(fields, "signature", _MAX_SIGNATURE_CHARS, "ASCII characters (40 hex)"),
        data=_text(fields, "dataEncrypt", _MAX_DATA_CHARS, "ASCII characters (base64)"),
        nonce=_text(
            fields, "nonce", _MAX_NONCE_CHARS, "characters of UTF-8 text", ascii_only=False
        ),
        timestamp=timestamp,
        timestamp_text=timestamp_text,
    )


def _timestamp(value: object) -> tuple[int, str]:
    """The envelope's timestamp as a number, and as the text the signature covers."""
    number = -1
    if isinstance(value, str):
        # str.isdigit alone also takes "²" and other Unicode digits, which int() refuses.
        if 0 < len(value) <= _MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit():
            number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
    if not 0 <= number <= _MAX_TIMESTAMP_MS:
        raise WebhookVerificationError(
            "the callback's timestamp is not epoch milliseconds: an integer from 0 to "
            f"{_MAX_TIMESTAMP_MS}, or its decimal digits as a string",
            reason="malformed",
        )
    return number, value if isinstance(value, str) else str(number)


def _text(
    fields: Mapping[str, Any], key: str, limit: int, what: str, *, ascii_only: bool = True
) -> str:
    """An envelope field that must be a string of at most ``limit`` characters of ``what``."""
    value = fields[key]
    if (
        isinstance(value, str)
        and len(value) <= limit
        and (value.isascii() if ascii_only else _is_utf8(value))
    ):
        return value
    raise WebhookVerificationError(
        f"the callback's {key} is not a string of at most {limit} {what}", reason="malformed"
    )


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8: a JSON escape can make a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _event(plaintext: bytes, envelope: _Envelope) -> WebhookEvent:
    """The event a decrypted payload states; ValueError (of one kind or another) otherwise.

    Every refusal here becomes the same error in `WebhookVerifier._open`: telling them apart
    would let anyone who knows the client id decrypt callbacks byte by byte.
    """
    payload = load_json(plaintext.decode("utf-8"))
    if not isinstance(payload, dict):
        raise _Unusable("not a JSON object")
    fields: dict[str, Any] = payload  # pyright: ignore[reportUnknownVariableType]
    job_id, status = fields.get("_id"), fields.get("status")
    if not (
        isinstance(job_id, str)
        and 0 < len(job_id) <= _MAX_ID_CHARS
        and job_id.isascii()
        and job_id.isprintable()
    ):
        raise _Unusable("no job _id")
    if type(status) is not int:  # bool is an int too, and no status
        raise _Unusable("no integer status")
    kind, url = fields.get("type"), fields.get("url")
    return WebhookEvent(
        id=job_id,
        status=ImageStatus(status),  # ValueError for a status Akool does not define
        type=kind if isinstance(kind, str) and _is_utf8(kind) else None,
        url=url if isinstance(url, str) and url and _is_utf8(url) else None,
        timestamp=envelope.timestamp,
        nonce=envelope.nonce,
        signature=envelope.signature,
        extra={
            key: value
            for key, value in fields.items()
            if key not in {"_id", "status", "type", "url"}
        },
    )
