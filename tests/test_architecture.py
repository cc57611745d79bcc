"""The layering written in .importlinter holds, and each contract fails when its arrow comes back.

import-linter reads the package's own imports; a copy of the package with one forbidden import
added must break exactly the contract that forbids it. So a contract that silently stopped
checking anything (a renamed module, a typo) fails here rather than passing forever.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / ".importlinter"
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install '.[test]')"
)


def lint(tree: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the akool_async package found in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_COLOR": "1"}
    return subprocess.run(  # noqa: S603 - a fixed command line
        [str(LINT_IMPORTS), "--config", str(CONTRACTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the package, to add forbidden imports to."""
    shutil.copytree(
        ROOT / "akool_async", tmp_path / "akool_async", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_the_package_keeps_every_contract(tree: pathlib.Path) -> None:
    """lint-imports passes on the package as it is: every contract kept, none broken."""
    result = lint(tree)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("_session.py", "import akool_async.testing", "The library imports neither the command"),
        ("_engine.py", "import rich", "The library writes to no console"),
        (
            "testing/_plan.py",
            "from akool_async import _models",
            "The emulator states Akool's wire itself",
        ),
        ("_polling.py", "import anyio", "The planner decides when from plain facts"),
        ("_wire.py", "from akool_async import _engine", "The wire knows how to talk to Akool"),
        ("_pace.py", "import coredis", "Only the coordination package imports the Redis client"),
        (
            "coordination/_redis.py",
            "import akool_async.testing",
            "The library imports neither the command",
        ),
    ],
)
def test_a_forbidden_arrow_breaks_its_contract(
    tree: pathlib.Path, module: str, line: str, contract: str
) -> None:
    """Adding one forbidden import fails lint-imports and names the contract it breaks."""
    path = tree / "akool_async" / module
    path.write_text(path.read_text() + f"\n{line}  # the arrow this test puts back\n")
    result = lint(tree)
    assert 1 == result.returncode, result.stdout + result.stderr
    broken = [row for row in result.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert 1 == len(broken), result.stdout
    assert broken[0].startswith(contract), broken
