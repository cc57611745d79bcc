"""Akool's webhook algorithm, checked against a reference written separately in this file.

The reference uses `cryptography` only for the bare AES block function (one 16-byte block at a
time); the CBC chaining, the PKCS#7 padding, the IV rule, base64 and the signature are written
out here by hand from Akool's description, so a mistake in the module is not copied into its test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import akool_async as ak
from akool_async import _webhook_crypto as crypto
from akool_reference import (
    ref_cbc_encrypt_raw,
    ref_decrypt,
    ref_encrypt,
    ref_iv,
    ref_pad,
    ref_signature,
)

CLIENT_ID = "mr0kTxsc6Lo-test-client-id"  # longer than 16 bytes, as Akool's ids are
SECRET_16 = "0123456789abcdef"
SECRET_24 = "akool-test-secret-24-byt"  # Akool's secrets are 24 bytes: AES-192
SECRET_32 = "0123456789abcdef0123456789abcdef"
SECRETS = (SECRET_16, SECRET_24, SECRET_32)
# The sample envelope on Akool's webhook page (docs.akool.com/ai-tools-suite/webhook).
DOCS_SAMPLE_DATA_ENCRYPT = (
    "LuG1OVSVIwOO/xpW00eSYo77Ncxa9h4VKmOJRjwoyoAmCIS/8FdJRJ+BpZn90BVAAg8xpU1bMmcDlAYDT010Wa9tNi1"
    "jivX25Ld03iA4EKs="
)


def assert_no_secret(text: str) -> None:
    assert [] == [secret for secret in (*SECRETS, "x" * 25) if secret in text]


# -- encryption, both directions ------------------------------------------------------------------

CLIENT_IDS = [
    pytest.param("abc", id="short-id-padded"),
    pytest.param("exactly-16-bytes", id="16-byte-id"),
    pytest.param(CLIENT_ID, id="long-id-cut"),
    pytest.param("ünïcødé-client-identifier", id="non-ascii-id-cut-mid-character"),
    pytest.param("", id="empty-id"),
]
PLAINTEXTS = [b"", b"x", b"a" * 15, b"b" * 16, b"c" * 17, b'{"_id":"1","status":3}' * 5]


@pytest.mark.parametrize("client_secret", SECRETS, ids=["aes128", "aes192", "aes256"])
@pytest.mark.parametrize("client_id", CLIENT_IDS)
@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=lambda p: f"{len(p)}-bytes")
def test_module_encrypts_what_the_reference_decrypts(
    client_secret: str, client_id: str, plaintext: bytes
) -> None:
    """encrypt() output decrypts with the hand-written reference, for every key and id shape."""
    data_encrypt = crypto.encrypt(plaintext, client_id=client_id, client_secret=client_secret)

    assert plaintext == ref_decrypt(data_encrypt, client_id, client_secret)
    assert ref_encrypt(plaintext, client_id, client_secret) == data_encrypt


@pytest.mark.parametrize("client_secret", SECRETS, ids=["aes128", "aes192", "aes256"])
@pytest.mark.parametrize("client_id", CLIENT_IDS)
@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=lambda p: f"{len(p)}-bytes")
def test_module_decrypts_what_the_reference_encrypts(
    client_secret: str, client_id: str, plaintext: bytes
) -> None:
    """The reference's ciphertext decrypts with decrypt()."""
    data_encrypt = ref_encrypt(plaintext, client_id, client_secret)

    assert plaintext == crypto.decrypt(
        data_encrypt, client_id=client_id, client_secret=client_secret
    )


@settings(max_examples=200, deadline=None)
@given(
    plaintext=st.binary(max_size=200),
    client_id=st.text(max_size=30),
    client_secret=st.sampled_from(SECRETS),
)
def test_round_trips_match_the_reference(
    plaintext: bytes, client_id: str, client_secret: str
) -> None:
    """Any bytes, any client id: module and reference agree in both directions."""
    ours = crypto.encrypt(plaintext, client_id=client_id, client_secret=client_secret)
    theirs = ref_encrypt(plaintext, client_id, client_secret)

    assert theirs == ours
    assert plaintext == ref_decrypt(ours, client_id, client_secret)
    assert plaintext == crypto.decrypt(theirs, client_id=client_id, client_secret=client_secret)


def test_padding_is_pkcs7_in_16_byte_blocks() -> None:
    """A whole block of input gains a whole block of padding; 24-byte keys do not change that."""
    sizes = {
        n: len(base64.b64decode(crypto.encrypt(b"z" * n, client_id="id", client_secret=SECRET_24)))
        for n in (0, 15, 16, 24, 31, 32, 48)
    }

    assert {0: 16, 15: 16, 16: 32, 24: 32, 31: 32, 32: 48, 48: 64} == sizes
    raw = ref_cbc_encrypt_raw(SECRET_24.encode(), ref_iv("id"), b"z" * 16)
    data_encrypt = crypto.encrypt(b"z" * 16, client_id="id", client_secret=SECRET_24)
    # The first block is the same with or without padding; the second is a full block of 0x10.
    assert raw == base64.b64decode(data_encrypt)[:16]


def test_akool_docs_sample_is_whole_16_byte_blocks() -> None:
    """Akool's sample ciphertext is 80 bytes: 16-byte PKCS#7 blocks, not the 24 its text says."""
    raw = base64.b64decode(DOCS_SAMPLE_DATA_ENCRYPT, validate=True)

    assert (80, 0, 8) == (len(raw), len(raw) % 16, len(raw) % 24)


def test_short_client_id_is_padded_with_spaces() -> None:
    """IV = the id's bytes padded with ASCII spaces (not NULs) to 16."""
    plaintext = b'{"_id":"64dd","status":2,"type":"image"}'
    data_encrypt = crypto.encrypt(plaintext, client_id="abc", client_secret=SECRET_24)
    spaces = ref_cbc_encrypt_raw(SECRET_24.encode(), b"abc" + b" " * 13, ref_pad(plaintext))
    nuls = ref_cbc_encrypt_raw(SECRET_24.encode(), b"abc" + b"\0" * 13, ref_pad(plaintext))

    assert b"abc             " == crypto.iv_for("abc")
    assert spaces == base64.b64decode(data_encrypt)
    assert nuls != spaces
    # The padded id and the short id are the same IV, so they decrypt each other's messages.
    assert plaintext == crypto.decrypt(
        data_encrypt, client_id="abc" + " " * 13, client_secret=SECRET_24
    )


def test_long_client_id_is_cut_to_16_bytes() -> None:
    """Only the first 16 bytes of a long id matter; the 16th does."""
    plaintext = b"same message"
    base = crypto.encrypt(plaintext, client_id="0123456789abcdefXYZ", client_secret=SECRET_24)
    other_tail = crypto.encrypt(plaintext, client_id="0123456789abcdef-", client_secret=SECRET_24)
    other_16th = crypto.encrypt(plaintext, client_id="0123456789abcdeX", client_secret=SECRET_24)

    assert b"0123456789abcdef" == crypto.iv_for("0123456789abcdefXYZ")
    assert base == other_tail
    assert base != other_16th


def test_iv_cuts_utf8_bytes_not_characters() -> None:
    """The cut is at byte 16, even inside a multi-byte character."""
    client_id = "ééééééééé"  # 9 characters, 18 bytes

    assert client_id.encode()[:16] == crypto.iv_for(client_id)
    assert 16 == len(crypto.iv_for(client_id))


@pytest.mark.parametrize("length", [0, 8, 15, 17, 23, 25, 31, 33, 64])
def test_key_must_be_16_24_or_32_bytes(length: int) -> None:
    """Other key lengths are refused, naming the allowed ones and never the key."""
    secret = "x" * length

    with pytest.raises(ValueError, match="16, 24 or 32 bytes") as encrypting:
        crypto.encrypt(b"data", client_id=CLIENT_ID, client_secret=secret)
    with pytest.raises(ValueError, match="16, 24 or 32 bytes") as decrypting:
        crypto.decrypt("AAAAAAAAAAAAAAAAAAAAAA==", client_id=CLIENT_ID, client_secret=secret)

    assert f"got {length} bytes" in str(encrypting.value)
    if length >= 8:
        assert secret not in str(encrypting.value)
        assert secret not in str(decrypting.value)


def test_key_length_counts_utf8_bytes() -> None:
    """A 12-character secret of 2-byte characters is a 24-byte key."""
    secret = "é" * 12

    data_encrypt = crypto.encrypt(b"ok", client_id="id", client_secret=secret)

    assert b"ok" == ref_decrypt(data_encrypt, "id", secret)


# -- decryption of bad input ----------------------------------------------------------------------


def _raw_b64(padded: bytes) -> str:
    raw = ref_cbc_encrypt_raw(SECRET_24.encode(), ref_iv(CLIENT_ID), padded)
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("data_encrypt", "message"),
    [
        pytest.param("not base64!", "not valid base64", id="not-base64"),
        pytest.param("QUJD", "not valid base64|whole 16-byte", id="3-bytes"),
        pytest.param("", "whole 16-byte", id="empty"),
        pytest.param(base64.b64encode(b"q" * 15).decode(), "got 15 bytes", id="15-bytes"),
        pytest.param(base64.b64encode(b"q" * 33).decode(), "got 33 bytes", id="33-bytes"),
        pytest.param("ÄÖÜ=", "not valid base64", id="non-ascii"),
        pytest.param(_raw_b64(b"a" * 15 + b"\x00"), "PKCS#7", id="pad-byte-0"),
        pytest.param(_raw_b64(b"a" * 15 + b"\x11"), "PKCS#7", id="pad-byte-17"),
        pytest.param(_raw_b64(b"a" * 13 + b"\x01\x03\x03"), "PKCS#7", id="pad-bytes-differ"),
    ],
)
def test_decrypt_refuses_bad_input(data_encrypt: str, message: str) -> None:
    """Bad base64, partial blocks and bad padding are ValueErrors that do not show the key."""
    with pytest.raises(ValueError, match=message) as caught:
        crypto.decrypt(data_encrypt, client_id=CLIENT_ID, client_secret=SECRET_24)

    assert_no_secret(str(caught.value))
    # No chained exception shows internals (cryptography's or binascii's) in a traceback.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_wrong_secret_fails_on_padding() -> None:
    """A message for another key fails (here: as bad padding), without showing either key."""
    plaintext = json.dumps({"_id": "64dd", "status": 3, "type": "image"}).encode()
    data_encrypt = ref_encrypt(plaintext, CLIENT_ID, SECRET_24)

    with pytest.raises(ValueError, match="wrong client_id or client_secret") as caught:
        crypto.decrypt(data_encrypt, client_id=CLIENT_ID, client_secret="another-secret-24-bytes!")

    assert_no_secret(str(caught.value))
    assert "another-secret-24-bytes!" not in str(caught.value)


def test_wrong_client_id_garbles_only_the_first_block() -> None:
    """CBC: the IV touches only block one, so a verifier must check the signature too."""
    plaintext = json.dumps({"_id": "64dd", "status": 3, "type": "image"}).encode()
    data_encrypt = ref_encrypt(plaintext, CLIENT_ID, SECRET_24)

    result = crypto.decrypt(data_encrypt, client_id="another-client-id", client_secret=SECRET_24)

    assert plaintext[16:] == result[16:]
    assert plaintext[:16] != result[:16]


# -- signature ------------------------------------------------------------------------------------


def test_signature_is_sha1_of_the_sorted_join() -> None:
    """sha1 of the four strings sorted and joined, as lowercase hex; the argument order is moot."""
    expected = hashlib.sha1(b"3abc").hexdigest()  # noqa: S324 - Akool's algorithm

    assert expected == crypto.signature("b", 3, "a", "c")
    assert expected == crypto.signature("c", "3", "b", "a")
    assert 40 == len(expected)
    assert expected == expected.lower()


def test_signature_sorts_as_plain_strings() -> None:
    """The sort is by code point: digits as text, uppercase before lowercase, no numeric order."""
    # As numbers 1710757981609 < 10000000000000; as strings "1000..." < "1710...".
    parts = ("Zeta-client", 1710757981609, "10000000000000", "aGVsbG8=")
    joined = "10000000000000" + "1710757981609" + "Zeta-client" + "aGVsbG8="

    assert hashlib.sha1(joined.encode()).hexdigest() == crypto.signature(*parts)  # noqa: S324
    assert ref_signature(*parts) == crypto.signature(*parts)


def test_signature_is_over_exactly_the_four_strings() -> None:
    """Changing any one of the four changes the signature; nothing else goes in."""
    base = ("client", 1710757981609, "1529", "ZGF0YQ==")
    signatures = {
        crypto.signature(*base),
        crypto.signature("client2", 1710757981609, "1529", "ZGF0YQ=="),
        crypto.signature("client", 1710757981610, "1529", "ZGF0YQ=="),
        crypto.signature("client", 1710757981609, "1530", "ZGF0YQ=="),
        crypto.signature("client", 1710757981609, "1529", "ZGF0YR=="),
    }

    assert 5 == len(signatures)
    assert ref_signature(*base) == crypto.signature(*base)
    assert crypto.signature(*base) == crypto.signature(
        "client", "1710757981609", "1529", "ZGF0YQ=="
    )


def test_signature_encodes_utf8() -> None:
    """Non-ASCII parts are hashed as UTF-8."""
    expected = hashlib.sha1("1nöncé€".encode()).hexdigest()  # noqa: S324 - Akool's algorithm

    assert expected == crypto.signature("€", 1, "nöncé", "")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", True),
        ("A94A8FE5CCB19BA61C4C0873D391E987982FBBD3", False),
        ("a94a8fe5ccb19ba61c4c0873d391e987982fbbd", False),
        ("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 ", False),
        ("", False),
        ("é" * 20, False),
        (None, False),
        (12345, False),
        (b"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", False),
    ],
)
def test_signature_matches(given: object, expected: bool) -> None:
    """Exact match only; anything not a string is a mismatch, not an exception."""
    computed = hashlib.sha1(b"test").hexdigest()  # noqa: S324 - Akool's algorithm

    assert expected == crypto.signature_matches(computed, given)


# -- the envelope ---------------------------------------------------------------------------------


def test_make_envelope_is_what_akool_posts() -> None:
    """The four fields with their JSON types; the body is compact JSON; the signature verifies."""
    payload = {
        "_id": "64dd82eef0b6684651e90131",
        "status": 3,
        "type": "image",
        "url": "https://x/ü.png",
    }

    envelope = crypto.make_envelope(
        payload,
        client_id=CLIENT_ID,
        client_secret=SECRET_24,
        timestamp_ms=1710757981609,
        nonce="1529",
    )

    assert ["dataEncrypt", "nonce", "signature", "timestamp"] == sorted(envelope)
    assert 1710757981609 == envelope["timestamp"]
    assert isinstance(envelope["timestamp"], int)
    assert "1529" == envelope["nonce"]
    plaintext = ref_decrypt(envelope["dataEncrypt"], CLIENT_ID, SECRET_24)
    assert payload == json.loads(plaintext)
    assert b" " not in plaintext
    assert (
        ref_signature(CLIENT_ID, 1710757981609, "1529", envelope["dataEncrypt"])
        == envelope["signature"]
    )
    # And it survives the trip through JSON, as Akool's POST body.
    assert envelope == json.loads(json.dumps(envelope))


def test_make_envelope_refuses_what_json_cannot_encode() -> None:
    """A payload JSON cannot encode is a TypeError, before anything is encrypted."""
    with pytest.raises(TypeError):
        crypto.make_envelope(
            {"_id": object()},
            client_id=CLIENT_ID,
            client_secret=SECRET_24,
            timestamp_ms=1,
            nonce="1",
        )


# -- the optional dependency ----------------------------------------------------------------------


def test_missing_cryptography_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without cryptography, encrypt and decrypt raise MissingDependency (an AkoolError and an
    ImportError) naming the extra: the package is installed from a checkout, not PyPI."""
    for name in list(sys.modules):
        if name == "cryptography" or name.startswith("cryptography."):
            monkeypatch.setitem(sys.modules, name, None)

    hint = r"install the package's webhooks extra \(pip install '\.\[webhooks\]' from a checkout\)"
    with pytest.raises(ak.MissingDependency, match=hint) as raised:
        crypto.encrypt(b"x", client_id=CLIENT_ID, client_secret=SECRET_24)
    assert isinstance(raised.value, ImportError)
    with pytest.raises(ak.MissingDependency, match=hint):
        crypto.decrypt("AAAAAAAAAAAAAAAAAAAAAA==", client_id=CLIENT_ID, client_secret=SECRET_24)
    # The signature is hashlib only.
    assert ref_signature("a", 1, "b", "c") == crypto.signature("a", 1, "b", "c")


def test_importing_the_package_does_not_need_cryptography() -> None:
    """import akool_async (and this module) work where cryptography is not installed."""
    code = (
        "import sys\n"
        "sys.modules['cryptography'] = None\n"
        "import akool_async, akool_async._webhook_crypto as c\n"
        "assert not any(m.startswith('cryptography.') for m in sys.modules)\n"
        "print(c.signature('a', 1, 'b', 'c'))\n"
    )

    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )

    assert "" == result.stderr
    assert ref_signature("a", 1, "b", "c") + "\n" == result.stdout
