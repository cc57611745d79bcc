"""pytest fixtures for code that calls Akool: an emulated Akool and a session wired to it.

Registered through the ``pytest11`` entry point, so pytest imports this module in every
environment where akool-async is installed, with or without the ``emulator`` extra. It therefore
imports only pytest up front; the emulator is imported when a fixture is first used.

```python
@pytest.mark.anyio
async def test_generates(akool_emulator, akool_session):
    await akool_session.create_by_prompt("a fox")
    assert akool_emulator.creates_for("a fox") == 1
```
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from akool_async import AkoolSession
    from akool_async.testing import AkoolEmulator

__all__ = ["akool_emulator", "akool_session"]


def _missing_extra(error: ImportError) -> BaseException:
    text = str(error)
    if "pip install" not in text:
        text = f"pip install 'akool-async[emulator]' ({text})"
    return pytest.fail.Exception(
        f"the akool_emulator and akool_session fixtures need the emulator extra: {text}",
        pytrace=False,
    )


@pytest.fixture
def akool_emulator() -> AkoolEmulator:
    """A fresh emulated Akool for one test, with the test credentials and seed 0.

    It accepts ``akool_async.testing.TEST_API_KEY`` (and the ``TEST_CLIENT_ID`` /
    ``TEST_CLIENT_SECRET`` pair) and runs on the test's clock, so under a virtual clock its
    jobs finish without real waiting. Reach it in-process through ``emulator.transport()``.
    """
    try:
        from akool_async.testing import (  # noqa: PLC0415 - the extra may not be installed
            TEST_API_KEY,
            TEST_CLIENT_ID,
            TEST_CLIENT_SECRET,
            AkoolEmulator,
        )

        return AkoolEmulator(
            api_key=TEST_API_KEY, client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET, seed=0
        )
    except ImportError as error:
        # The message carries the cause; the chained traceback would only bury it.
        raise _missing_extra(error) from None


@pytest.fixture
async def akool_session(akool_emulator: AkoolEmulator) -> AsyncGenerator[AkoolSession, None]:
    """An open `AkoolSession` talking in-process to ``akool_emulator``, with its API key.

    Override ``akool_emulator`` (say, with faults or a ``time_scale``) and this session follows.
    An async fixture: use it from tests run by anyio (``@pytest.mark.anyio``). The session and
    its HTTP client are closed when the test ends.
    """
    import httpx  # noqa: PLC0415 - kept off the import path of every pytest run

    from akool_async import AkoolSession  # noqa: PLC0415 - ditto

    async with (
        httpx.AsyncClient(
            transport=akool_emulator.transport(), base_url=akool_emulator.base_url
        ) as http_client,
        AkoolSession(api_key=akool_emulator.api_key, http_client=http_client) as session,
    ):
        yield session
