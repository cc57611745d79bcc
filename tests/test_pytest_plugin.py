"""The pytest plugin: akool_emulator and akool_session, as a user's test suite sees them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "akool_async.testing.pytest_plugin"

# What the plugin's users need to get going without the emulator extra installed.
EXTRA_PACKAGES = ("PIL", "hypercorn", "cryptography")


def plugin_args() -> list[str]:
    """Load the plugin by name unless the installed metadata already registers it.

    The project's own pyproject also keeps looptime's plugin out, as the inner runs do here.
    """
    registered = any(entry.value == PLUGIN for entry in entry_points(group="pytest11"))
    return ["-p", "no:looptime_plugin", "-p", "no:cacheprovider"] + (
        [] if registered else ["-p", PLUGIN]
    )


USER_TESTS = """
    import pytest

    SESSIONS = []


    @pytest.fixture(
        params=[pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("trio", {}), id="trio")]
    )
    def anyio_backend(request):
        return request.param


    @pytest.mark.anyio
    async def test_create_is_counted(akool_emulator, akool_session):
        await akool_session.create_by_prompt("a fox")
        SESSIONS.append(akool_session)
        assert 1 == akool_emulator.creates_for("a fox")


    @pytest.mark.anyio
    async def test_each_test_gets_a_fresh_emulator(akool_emulator, akool_session):
        assert 0 == akool_emulator.creates_for("a fox")
        await akool_session.create_by_prompt("a fox")
        assert 1 == akool_emulator.creates_for("a fox")


    def test_sessions_were_closed_after_their_tests():
        assert 2 == len(SESSIONS)
        assert all("closed" in repr(session) for session in SESSIONS)
"""


USER_OVERRIDE = """
    import pytest

    from akool_async.testing import AkoolEmulator


    @pytest.fixture
    def anyio_backend():
        return "trio"


    @pytest.fixture
    def akool_emulator():
        return AkoolEmulator(api_key="the-user's-own-key", seed=7)


    @pytest.mark.anyio
    async def test_session_follows_an_overridden_emulator(akool_emulator, akool_session):
        await akool_session.create_by_prompt("a fox")
        assert 1 == akool_emulator.creates_for("a fox")
"""


def test_fixtures_drive_the_emulator(pytester: pytest.Pytester) -> None:
    """A user's anyio test creates a job through akool_session; akool_emulator counts it."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_user=textwrap.dedent(USER_TESTS), test_override=textwrap.dedent(USER_OVERRIDE)
    )

    result = pytester.runpytest(*plugin_args())

    result.assert_outcomes(passed=6)


def test_plugin_imports_without_the_emulator_extra() -> None:
    """pytest loads the plugin in every environment with akool-async, extra installed or not."""
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in EXTRA_PACKAGES)
    code = f"import sys; {blocked}; import {PLUGIN}"

    completed = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )

    assert (0, "") == (completed.returncode, completed.stderr)


def test_fixture_without_the_emulator_extra_says_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    """Without the extra, using a fixture fails that test with the pip command to run."""
    blocked = "\n".join(f"sys.modules[{name!r}] = None" for name in EXTRA_PACKAGES)
    pytester.makepyfile(block_emulator_extra=f"import sys\n{blocked}\n")
    pytester.makepyfile(
        test_user="""
        def test_uses_the_emulator(akool_emulator):
            pass
        """
    )

    result = pytester.runpytest_subprocess("-p", "block_emulator_extra", *plugin_args())

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pip install 'akool-async[[]emulator[]]'*"])
