"""Developer tasks. Plain ``nox`` runs them all: tests, lint, typing, docs.

Every session runs on the interpreter nox itself runs on, so nothing here asks for a Python
version that a machine may not have. Pass arguments to pytest with ``nox -s tests -- -k name``.
"""

from __future__ import annotations

import pathlib

import nox

nox.options.sessions = ["tests", "soak", "lint", "typing", "docs"]
# uv when it is installed (``pip install 'nox[uv]'``), else plain virtualenv: both work here.
nox.options.default_venv_backend = "uv|virtualenv"
# Reusing a venv is safe: every session reinstalls the project and its extras on each run, so only
# the time to create the venv is saved. CI always starts from a fresh clone and a new .nox/.
nox.options.reuse_existing_virtualenvs = True
# A tool missing from the session's venv must fail the session, not run from the caller's PATH.
nox.options.error_on_external_run = True

ROOT = pathlib.Path(__file__).parent

# ruff selects ALL rules, so a new ruff release can fail lint on unchanged code: bump on purpose.
RUFF = "ruff~=0.17.6"
IMPORT_LINTER = "import-linter>=2.1"
# Lint what exists: benchmarks/ and examples/ may be empty or absent.
LINT_PATHS = [
    path
    for path in ("akool_async", "tests", "benchmarks", "examples", "noxfile.py")
    if (ROOT / path).is_file() or any((ROOT / path).rglob("*.py"))
]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite under coverage; fail below 95 % branch coverage."""
    session.install(".[test]")

    # Stale data from an interrupted run must not count towards this one.
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "-m", "not soak", *session.posargs)
    session.run("coverage", "combine")
    session.run("coverage", "report", "--fail-under=95")


@nox.session
def soak(session: nox.Session) -> None:
    """Run the soak tests (tens of thousands of jobs through one session) without coverage.

    What they exercise is covered by the tests session; tracing it would triple their time.
    """
    session.install(".[test]")

    session.run("pytest", "-m", "soak", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff, and the layering with import-linter (.importlinter)."""
    session.install(RUFF, IMPORT_LINTER)

    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)
    # Reads the package's imports from source here; a wrong arrow fails CI (docs/architecture.md).
    session.run("lint-imports")


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check the package and tests/typing/api.py with mypy and pyright, both strict."""
    session.install(".[typing]")

    # Both read their files and their strictness from pyproject.toml.
    session.run("mypy")
    session.run("pyright")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation; any warning (a broken link, a bad docstring) fails it."""
    # mkdocstrings formats the signatures it shows with ruff.
    session.install(".[docs]", RUFF)

    # The banner about MkDocs' future is noise in every build log.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", *session.posargs, env=env)
