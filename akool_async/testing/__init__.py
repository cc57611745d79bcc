"""Test Akool code without an Akool account: a faithful local emulator of Akool's image API.

```python
from akool_async.testing import AkoolEmulator

emulator = AkoolEmulator(time_scale=0.01)
async with emulator.client() as http, ak.AkoolSession(
    api_key=emulator.api_key, http_client=http
) as session:
    job = await session.generate("a red fox in snow")
```

Needs the ``emulator`` extra: ``pip install 'akool-async[emulator]'``. The pytest fixtures
``akool_emulator`` and ``akool_session`` are registered automatically.

The emulator states Akool's wire (paths, scales, statuses, buttons, codes, the webhook envelope)
for itself, from Akool's documentation, and imports nothing of the client it tests; a bad setting
raises its own `EmulatorConfigError`. Only the pytest plugin hands out an `akool_async` session.
"""

from __future__ import annotations

from akool_async._public import report_public_module as _report_public_module

from ._accounting import EmulatorAccounting
from ._deliveries import DeliveryAttempt, DeliveryPolicy
from ._emulator import (
    ACCOUNTING_PATH,
    TEST_API_KEY,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    AkoolEmulator,
)
from ._errors import EmulatorConfigError
from ._http import EmulatedDisconnect, RecordedRequest
from ._jobs import EmulatedJob, JobKind
from ._plan import Duration, DurationLaw, EmulatorTimings, Faults, Mixture, Pareto

__all__ = [
    "ACCOUNTING_PATH",
    "TEST_API_KEY",
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "AkoolEmulator",
    "DeliveryAttempt",
    "DeliveryPolicy",
    "Duration",
    "DurationLaw",
    "EmulatedDisconnect",
    "EmulatedJob",
    "EmulatorAccounting",
    "EmulatorConfigError",
    "EmulatorTimings",
    "Faults",
    "JobKind",
    "Mixture",
    "Pareto",
    "RecordedRequest",
]

_report_public_module(globals(), __all__, "akool_async.testing")
