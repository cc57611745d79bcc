"""An independent implementation of Akool's webhook algorithm, for tests only.

It uses `cryptography` only for the bare AES block function (one 16-byte block at a time); the
CBC chaining, the PKCS#7 padding, the IV rule, base64 and the signature are written out here by
hand from Akool's description (FACTS.md), so a mistake in the package is not copied into a test.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16


def ref_iv(client_id: str) -> bytes:
    raw = client_id.encode("utf-8")
    if len(raw) >= BLOCK:
        return raw[:BLOCK]
    return raw + b" " * (BLOCK - len(raw))


def ref_pad(data: bytes) -> bytes:
    count = BLOCK - len(data) % BLOCK
    return data + bytes([count] * count)


def ref_unpad(data: bytes) -> bytes:
    count = data[-1]
    if not 1 <= count <= BLOCK or data[-count:] != bytes([count] * count):
        raise AssertionError("reference: bad padding")
    return data[:-count]


def _block_cipher(key: bytes) -> Cipher[modes.ECB]:
    # ECB of one block is the raw AES permutation, which the reference chains by hand.
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def ref_cbc_encrypt_raw(key: bytes, iv: bytes, padded: bytes) -> bytes:
    assert 0 == len(padded) % BLOCK
    encryptor = _block_cipher(key).encryptor()
    previous, out = iv, b""
    for start in range(0, len(padded), BLOCK):
        previous = encryptor.update(_xor(padded[start : start + BLOCK], previous))
        out += previous
    return out


def ref_encrypt(plaintext: bytes, client_id: str, client_secret: str) -> str:
    raw = ref_cbc_encrypt_raw(client_secret.encode(), ref_iv(client_id), ref_pad(plaintext))
    return base64.b64encode(raw).decode()


def ref_decrypt(data_encrypt: str, client_id: str, client_secret: str) -> bytes:
    raw = base64.b64decode(data_encrypt, validate=True)
    decryptor = _block_cipher(client_secret.encode()).decryptor()
    previous, out = ref_iv(client_id), b""
    for start in range(0, len(raw), BLOCK):
        block = raw[start : start + BLOCK]
        out += _xor(decryptor.update(block), previous)
        previous = block
    return ref_unpad(out)


def ref_signature(client_id: str, timestamp: int, nonce: str, data_encrypt: str) -> str:
    joined = "".join(sorted([client_id, str(timestamp), nonce, data_encrypt]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()  # noqa: S324 - Akool's algorithm
