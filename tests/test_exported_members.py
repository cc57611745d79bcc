"""The public namespace: ``akool_async.__all__`` is complete, sorted and reports its own module."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types

import pytest

import akool_async

# Dunder names that are part of the public surface although they start with an underscore.
PUBLIC_DUNDERS = frozenset({"__version__"})


def _is_public_attribute(name: str, value: object) -> bool:
    if name.startswith("_") and name not in PUBLIC_DUNDERS:
        return False
    if isinstance(value, types.ModuleType):
        # Subpackages (akool_async.testing, ...) are imported as such, not re-exported.
        return False
    # `from __future__ import annotations` binds a name in the module; it is not an export.
    return type(value).__module__ != "__future__"


def _isort_style_key(name: str) -> tuple[int, list[str | int]]:
    """Ruff's RUF022 order: SCREAMING_SNAKE_CASE, then CamelCase, then the rest; natural sort."""
    if len(name) > 1 and name.isupper():
        category = 0
    elif name[:1].isupper():
        category = 1
    else:
        category = 2
    # re.split with a group alternates text and digit runs, so like parts always meet like.
    parts = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return category, parts


def test_all_names_exist() -> None:
    """Every name in __all__ can be imported from akool_async."""
    missing = [name for name in akool_async.__all__ if not hasattr(akool_async, name)]

    assert [] == missing


def test_all_has_no_duplicates() -> None:
    """No name is listed twice."""
    assert len(set(akool_async.__all__)) == len(akool_async.__all__)


def test_all_is_sorted_like_ruff() -> None:
    """__all__ is in the isort-style order ruff's RUF022 enforces."""
    assert sorted(akool_async.__all__, key=_isort_style_key) == list(akool_async.__all__)


def test_all_matches_public_attributes() -> None:
    """Every public, non-module attribute of akool_async is exported, and nothing else."""
    public = {
        name for name, value in vars(akool_async).items() if _is_public_attribute(name, value)
    }

    assert public == set(akool_async.__all__)


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in akool_async.__all__
        if inspect.isclass(getattr(akool_async, name, None))
        or inspect.isfunction(getattr(akool_async, name, None))
    ],
)
def test_exports_report_public_module(name: str) -> None:
    """Exported classes and functions say akool_async, not a private module, in reprs and docs."""
    assert "akool_async" == getattr(akool_async, name).__module__


def test_isort_style_key_orders_like_ruff() -> None:
    """The sort key itself agrees with ruff on constants, classes, the rest and numbers."""
    names = ["__version__", "Button", "V10", "API_KEY", "APIError", "V2", "AccountBanned", "X"]

    expected = ["API_KEY", "V2", "V10", "APIError", "AccountBanned", "Button", "X", "__version__"]

    assert expected == sorted(names, key=_isort_style_key)


def test_webhook_exports_report_their_package() -> None:
    """akool_async.webhooks' classes name it in reprs and docs; its __all__ is complete, sorted."""
    from akool_async import webhooks  # noqa: PLC0415 - the subpackage under test

    classes = [name for name in webhooks.__all__ if inspect.isclass(getattr(webhooks, name))]
    public = {name for name, value in vars(webhooks).items() if _is_public_attribute(name, value)}

    assert {"akool_async.webhooks"} == {getattr(webhooks, name).__module__ for name in classes}
    assert public == set(webhooks.__all__)
    assert sorted(webhooks.__all__, key=_isort_style_key) == list(webhooks.__all__)


def test_testing_exports_report_their_package() -> None:
    """akool_async.testing's classes name it in reprs and docs; its __all__ is complete, sorted."""
    from akool_async import testing  # noqa: PLC0415 - the subpackage under test

    classes = [name for name in testing.__all__ if inspect.isclass(getattr(testing, name))]
    public = {name for name, value in vars(testing).items() if _is_public_attribute(name, value)}

    assert {"akool_async.testing"} == {getattr(testing, name).__module__ for name in classes}
    assert public == set(testing.__all__)
    assert sorted(testing.__all__, key=_isort_style_key) == list(testing.__all__)


SILENT_UNTIL_CONFIGURED = """
import logging
import akool_async
logging.getLogger("akool_async._wire").warning("retry 1 of 4 (before any configuration)")
logging.getLogger("elsewhere").warning("an application warning")
logging.basicConfig(format="%(name)s: %(message)s")
logging.getLogger("akool_async._wire").warning("retry 2 of 4 (after basicConfig)")
"""


def test_the_sdk_logs_nothing_until_the_application_configures_logging() -> None:
    """A NullHandler on akool_async: no last-resort stderr output, then records once configured."""
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", SILENT_UNTIL_CONFIGURED],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    expected = "an application warning\nakool_async._wire: retry 2 of 4 (after basicConfig)\n"
    assert expected == done.stderr
