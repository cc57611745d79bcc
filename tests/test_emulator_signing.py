"""The emulator's own statement of Akool's webhook envelope, checked against the test reference.

The emulator seals callbacks with `akool_async.testing._webhook_signing`, written apart from the
SDK's verifier; tests/akool_reference.py is a third implementation, chained by hand, so all
three must agree for a callback to pass.
"""

from __future__ import annotations

import json

import pytest

from akool_async.testing import EmulatorConfigError
from akool_async.testing._webhook_signing import WebhookSigner
from akool_reference import ref_decrypt, ref_encrypt, ref_signature

CLIENT_ID = "mr0kTxsc6Lo-emulator-client-id"  # longer than 16 bytes, as Akool's ids are
SECRETS = ("0123456789abcdef", "emulator-secret-24-bytes", "0123456789abcdef0123456789abcdef")
CLIENT_IDS = [
    pytest.param("abc", id="short-id-padded"),
    pytest.param("exactly-16-bytes", id="16-byte-id"),
    pytest.param(CLIENT_ID, id="long-id-cut"),
    pytest.param("ünïcødé-client-identifier", id="non-ascii-id-cut-mid-character"),
]
PLAINTEXTS = [b"", b"x", b"a" * 15, b"b" * 16, b"c" * 17, b'{"_id":"1","status":3}' * 5]


@pytest.mark.parametrize("client_secret", SECRETS, ids=["aes128", "aes192", "aes256"])
@pytest.mark.parametrize("client_id", CLIENT_IDS)
@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=lambda p: f"{len(p)}-bytes")
def test_emulator_encrypts_as_the_reference_does(
    client_secret: str, client_id: str, plaintext: bytes
) -> None:
    """Byte for byte the reference's ciphertext, for every key length, id shape and length."""
    signer = WebhookSigner(client_id=client_id, client_secret=client_secret)

    data_encrypt = signer.encrypt(plaintext)

    assert ref_encrypt(plaintext, client_id, client_secret) == data_encrypt
    assert plaintext == ref_decrypt(data_encrypt, client_id, client_secret)


@pytest.mark.parametrize(
    ("timestamp", "nonce", "data_encrypt"),
    [
        (1710757981609, "1529", "LuG1OVSVIwOO/xpW00eSYo77Ncxa9h4VKmOJRjwoyoA="),
        # Sorted as plain strings: digits before upper case before lower case.
        (9, "10", "Zz+/="),
        (1, "ü", "a"),
    ],
)
def test_emulator_signs_as_the_reference_does(
    timestamp: int, nonce: str, data_encrypt: str
) -> None:
    """The signature is the reference's SHA-1 of the four strings, sorted and joined."""
    signer = WebhookSigner(client_id=CLIENT_ID, client_secret=SECRETS[1])

    assert ref_signature(CLIENT_ID, timestamp, nonce, data_encrypt) == signer.sign(
        timestamp, nonce, data_encrypt
    )


def test_envelope_opens_with_the_reference() -> None:
    """The envelope's four fields, its signature checked and its body decrypted by the reference."""
    signer = WebhookSigner(client_id=CLIENT_ID, client_secret=SECRETS[1])
    payload = {
        "_id": "6650c0ffee1234567890abcd",
        "status": 3,
        "type": "image",
        "url": "https://x/ü",
    }

    envelope = signer.envelope(payload, timestamp_ms=1710757981609, nonce="1529")

    assert (1710757981609, "1529") == (envelope["timestamp"], envelope["nonce"])
    expected_signature = ref_signature(CLIENT_ID, 1710757981609, "1529", envelope["dataEncrypt"])
    assert expected_signature == envelope["signature"]
    opened = ref_decrypt(envelope["dataEncrypt"], CLIENT_ID, SECRETS[1])
    assert payload == json.loads(opened)
    # Compact JSON, UTF-8 as is: what Akool's own demo code produces.
    assert b'"status":3,"type":"image","url":"https://x/\xc3\xbc"}' in opened


@pytest.mark.parametrize("secret", ["", "ten-bytes!", "twenty-five-bytes-secret!", "ü" * 10])
def test_a_key_of_the_wrong_length_is_a_config_error_that_hides_it(secret: str) -> None:
    """A secret that is not 16, 24 or 32 UTF-8 bytes is refused, its length said, not its value."""
    with pytest.raises(EmulatorConfigError, match="16, 24 or 32 bytes") as caught:
        WebhookSigner(client_id=CLIENT_ID, client_secret=secret)

    assert f"got {len(secret.encode())} bytes" in str(caught.value)
    assert not secret or secret not in str(caught.value)


def test_repr_hides_the_key() -> None:
    """A signer's repr shows nothing of the secret it holds."""
    assert "WebhookSigner(...)" == repr(WebhookSigner(client_id="c", client_secret=SECRETS[1]))


def test_config_error_is_a_value_error() -> None:
    """EmulatorConfigError is a ValueError of the emulator's own, not one of the SDK's errors."""
    import akool_async as ak  # noqa: PLC0415 - only to show the two trees are apart

    assert (True, False) == (
        issubclass(EmulatorConfigError, ValueError),
        issubclass(EmulatorConfigError, ak.AkoolError),
    )
