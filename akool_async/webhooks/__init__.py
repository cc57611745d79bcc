"""Akool's webhook callbacks: verified, decrypted, received, and used instead of polling.

Akool POSTs each job's status changes to the ``webhookUrl`` given at create, signed with SHA-1
over the client id and the envelope, and AES-CBC-encrypted with the client secret. This package
checks and opens them (`WebhookVerifier`), and receives them as an ASGI app (`WebhookReceiver`,
also ``AkoolSession.webhook_app``). Needs the ``webhooks`` extra (cryptography; hypercorn for
``AkoolSession(webhook_listen=...)``).
"""

from __future__ import annotations

from akool_async._public import report_public_module as _report_public_module

from ._receiver import WebhookReceiver
from ._verify import (
    DEFAULT_TOLERANCE,
    MAX_BODY_BYTES,
    WebhookEvent,
    WebhookVerificationError,
    WebhookVerifier,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_BODY_BYTES",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WebhookVerifier",
]

_report_public_module(globals(), __all__, __name__)
