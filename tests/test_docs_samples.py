"""Every Python sample in README.md and docs/ runs, against the emulator, in virtual time.

Each ```python block is run as written, top-level ``await`` and ``async with`` allowed, on both
backends, in a world where:

* every HTTP client the sample makes (the session's own included) reaches the in-process
  emulator for ``openapi.akool.com`` (Akool's default API root) and no network at all beyond it;
* a placeholder credential, ``"..."``, is the emulator's test credential of the same name, and
  ``AKOOL_API_KEY`` is set to its key;
* ``webhook_listen`` listens on a free loopback port, whatever address the sample names;
* a top-level ``anyio.run(main)`` awaits ``main()`` on the test's loop (and virtual clock);
* ``ak`` (``import akool_async as ak``), ``anyio`` and ``httpx`` are imported, as the docs take
  for granted; the current folder is an empty temporary one;
* an ``async def test_*`` the sample defines is then called, its ``akool_emulator`` and
  ``akool_session`` arguments given as the pytest plugin's fixtures would give them.

```pycon blocks are run as doctests in the same world. A block that cannot run as written says
so in the Markdown, on the line right before its opening fence, in an HTML comment (invisible on
the rendered page, visible in review):

* ``<!-- sample: skip REASON -->``: not run; the reason shows in pytest's report;
* ``<!-- sample: setup=session -->``: a fragment of a longer program, run with ``session`` (an
  open session), ``job`` (a finished grid of it), ``job_id`` (its id), ``prompt``, ``prompts``
  and ``unresolved`` (an empty list) defined (see `SETUPS`);
* ``<!-- sample: continues -->``: runs after the file's previous sample, with what it defined.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import inspect
import logging
import pathlib
import re
import textwrap
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final

import anyio
import attrs
import httpx
import pytest

import akool_async as ak
from akool_async.testing import TEST_API_KEY, TEST_CLIENT_ID, TEST_CLIENT_SECRET, AkoolEmulator

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
PLACEHOLDER: Final = "..."
PLACEHOLDER_CREDENTIALS: Final = {
    "api_key": TEST_API_KEY,
    "client_id": TEST_CLIENT_ID,
    "client_secret": TEST_CLIENT_SECRET,
}
EMULATED_HOSTS: Final = frozenset({httpx.URL(ak.DEFAULT_BASE_URL).host, "akool-emulator.test"})
RUN_LANGUAGES: Final = frozenset({"python", "pycon"})
REAL_SECONDS: Final = 60.0
"""The most real time one sample may take (they take well under a second each)."""
_FENCE: Final = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_DIRECTIVE: Final = re.compile(r"^\s*<!--\s*sample:\s*(?P<text>.*?)\s*-->\s*$")


@attrs.frozen
class Sample:
    """One fenced code block of a Markdown file, and the directive before it (if any)."""

    path: pathlib.Path
    line: int  # the line of the opening fence, 1-based
    lang: str
    code: str
    directive: str | None = None
    previous: Sample | None = None  # the file's sample before it, for ``continues``

    @property
    def name(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown.as_posix()}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        if self.directive is not None and self.directive.startswith("skip"):
            return self.directive.removeprefix("skip").strip()
        return None

    @property
    def setup(self) -> str | None:
        if self.directive is not None and self.directive.startswith("setup="):
            return self.directive.removeprefix("setup=")
        return None


class DirectiveError(ValueError):
    """A ``<!-- sample: ... -->`` comment this module does not understand."""


def extract(path: pathlib.Path) -> list[Sample]:
    """The Python and pycon blocks of one Markdown file, each with its checked directive.

    Raises:
        DirectiveError: An unknown directive, a skip without a reason, an unknown setup, a
            ``continues`` with no sample before it, or a directive not followed by a block.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    samples: list[Sample] = []
    previous: Sample | None = None
    number = 0
    while number < len(lines):
        fence = _FENCE.match(lines[number])
        if fence is None:
            _refuse_a_stray_directive(path, lines, number)
            number += 1
            continue
        end = number + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = textwrap.dedent("\n".join(line for line in lines[number + 1 : end]))
        lang = fence["lang"]
        directive = _directive_before(path, lines, number)
        if lang in RUN_LANGUAGES:
            sample = Sample(path, number + 1, lang, body, directive, previous)
            _check(sample)
            samples.append(sample)
            previous = sample
        elif directive is not None:
            raise DirectiveError(f"{path}:{number}: a sample directive before a {lang!r} block")
        number = end + 1
    return samples


def _directive_before(path: pathlib.Path, lines: list[str], fence: int) -> str | None:
    if fence == 0:
        return None
    found = _DIRECTIVE.match(lines[fence - 1])
    if found is None:
        return None
    if not found["text"]:
        raise DirectiveError(f"{path}:{fence}: an empty sample directive")
    return str(found["text"])


def _refuse_a_stray_directive(path: pathlib.Path, lines: list[str], number: int) -> None:
    """A directive must sit on the line right before a fence, or it would silently do nothing."""
    if _DIRECTIVE.match(lines[number]) is None:
        return
    following = lines[number + 1] if number + 1 < len(lines) else ""
    if _FENCE.match(following) is None:
        raise DirectiveError(
            f"{path}:{number + 1}: a sample directive must be on the line right before a fence"
        )


def _check(sample: Sample) -> None:
    directive = sample.directive
    if directive is None:
        return
    where = f"{sample.path}:{sample.line - 1}"
    if directive.startswith("skip"):
        if not sample.skip_reason:
            raise DirectiveError(f"{where}: 'skip' needs a reason: <!-- sample: skip REASON -->")
    elif directive.startswith("setup="):
        if sample.setup not in SETUPS:
            raise DirectiveError(
                f"{where}: unknown setup {sample.setup!r}; known: {', '.join(sorted(SETUPS))}"
            )
    elif directive == "continues":
        if sample.previous is None:
            raise DirectiveError(f"{where}: 'continues' on the first sample of the file")
    else:
        raise DirectiveError(
            f"{where}: unknown sample directive {directive!r}; use 'skip REASON', "
            "'setup=NAME' or 'continues'"
        )


def documentation() -> list[pathlib.Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


# -- the world a sample runs in ----------------------------------------------------------------


class _EmulatedNetwork(httpx.AsyncBaseTransport):
    """Akool's hosts are the in-process emulator; every other host is unreachable."""

    def __init__(self, emulator: AkoolEmulator) -> None:
        self._emulator = emulator.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in EMULATED_HOSTS:
            return await self._emulator.handle_async_request(request)
        raise httpx.ConnectError(
            f"docs samples reach no network ({request.url.host})", request=request
        )


@attrs.define
class World:
    """The emulator behind every sample's requests, and the names a sample starts with."""

    emulator: AkoolEmulator
    namespace: dict[str, Any]


@contextlib.contextmanager
def world(monkeypatch: pytest.MonkeyPatch, folder: pathlib.Path) -> Iterator[World]:
    """Patch the SDK's defaults onto the emulator for one sample; undo everything after."""
    emulator = AkoolEmulator(
        api_key=TEST_API_KEY, client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET, seed=0
    )
    network = _EmulatedNetwork(emulator)
    real_client = httpx.AsyncClient
    real_session = ak.AkoolSession

    class AsyncClient(real_client):
        """An httpx client whose default transport is the emulated network."""

        def __init__(self, *args: Any, transport: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, transport=network if transport is None else transport, **kwargs)

    class AkoolSession(real_session):
        """A session whose placeholder credentials and listening address are the test's."""

        def __init__(self, **options: Any) -> None:
            for name, value in PLACEHOLDER_CREDENTIALS.items():
                if options.get(name) == PLACEHOLDER:
                    options[name] = value
            if options.get("webhook_listen") is not None:
                options["webhook_listen"] = ("127.0.0.1", 0)
            super().__init__(**options)

    AkoolSession.__module__ = "akool_async"
    monkeypatch.setattr(httpx, "AsyncClient", AsyncClient)
    monkeypatch.setattr(ak, "AkoolSession", AkoolSession)
    monkeypatch.setenv("AKOOL_API_KEY", TEST_API_KEY)
    monkeypatch.chdir(folder)
    with _logging_restored():
        yield World(emulator, {"ak": ak, "anyio": anyio, "httpx": httpx})


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Samples configure logging (basicConfig, levels): leave none of it to later tests."""
    root, sdk = logging.getLogger(), logging.getLogger("akool_async")
    handlers, root_level, sdk_level = list(root.handlers), root.level, sdk.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(root_level)
        sdk.setLevel(sdk_level)


@contextlib.asynccontextmanager
async def _session_setup() -> AsyncIterator[dict[str, Any]]:
    """An open session on the emulator, with a finished grid and the names fragments use."""
    async with ak.AkoolSession(api_key=TEST_API_KEY) as session:
        job = await session.generate("a red fox in snow", scale="16:9")
        await job.wait(timeout=600)
        yield {
            "session": session,
            "job": job,
            "job_id": job.id,
            "prompt": "a lighthouse at dusk",
            "prompts": ["a lighthouse at dusk", "an owl in the rain", "a cat on a piano"],
            "unresolved": [],
        }


SETUPS: Final[dict[str, Callable[[], contextlib.AbstractAsyncContextManager[dict[str, Any]]]]] = {
    "session": _session_setup,
}


# -- running a sample ---------------------------------------------------------------------------


class _AwaitAnyioRun(ast.NodeTransformer):
    """A top-level ``anyio.run(main, *args, ...)`` becomes ``await main(*args)``."""

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node.body = [self._replace(statement) for statement in node.body]
        return node

    @staticmethod
    def _replace(statement: ast.stmt) -> ast.stmt:
        match statement:
            case ast.Expr(
                value=ast.Call(
                    func=ast.Attribute(value=ast.Name(id="anyio"), attr="run"),
                    args=[function, *arguments],
                )
            ):
                call = ast.Call(func=function, args=arguments, keywords=[])
                return ast.copy_location(ast.Expr(value=ast.Await(value=call)), statement)
            case _:
                return statement


async def run_python(sample: Sample, namespace: dict[str, Any]) -> None:
    """Run one Python block in ``namespace``; its line numbers are the Markdown file's."""
    tree = _AwaitAnyioRun().visit(ast.parse(sample.code, filename=str(sample.path)))
    ast.increment_lineno(tree, sample.line)
    ast.fix_missing_locations(tree)
    before = set(namespace)
    code = compile(tree, str(sample.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome = eval(code, namespace)  # noqa: S307 - the project's own documentation
    if inspect.iscoroutine(outcome):
        await outcome
    for name in sorted(set(namespace) - before):
        if name.startswith("test_") and inspect.iscoroutinefunction(namespace[name]):
            await _call_test(namespace[name], namespace)


async def _call_test(test: Callable[..., Any], namespace: dict[str, Any]) -> None:
    """Call a sample's pytest test with the plugin's fixtures, as pytest would."""
    emulator: AkoolEmulator = namespace["__emulator__"]
    wanted = set(inspect.signature(test).parameters)
    async with contextlib.AsyncExitStack() as stack:
        fixtures: dict[str, Any] = {"akool_emulator": emulator}
        if "akool_session" in wanted:
            http = await stack.enter_async_context(emulator.client())
            fixtures["akool_session"] = await stack.enter_async_context(
                ak.AkoolSession(api_key=emulator.api_key, http_client=http)
            )
        await test(**{name: fixtures[name] for name in wanted})


def run_pycon(sample: Sample, namespace: dict[str, Any]) -> None:
    """Run one pycon block as a doctest: each prompt's output as shown."""
    test = doctest.DocTestParser().get_doctest(
        sample.code, namespace, sample.name, str(sample.path), sample.line
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=report.append, clear_globs=False)
    if runner.failures:
        raise AssertionError("".join(report))


async def within_real_seconds(limit: float, work: Awaitable[object]) -> None:
    """Await ``work``, failing if it takes more than ``limit`` seconds of *real* time.

    A virtual deadline would not do: while a worker thread writes a file, the virtual clock
    jumps to the next timer, so a deadline would fire in the middle of a download. A thread that
    waits in real time bounds a sample that never ends instead.
    """
    finished = threading.Event()
    timed_out = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal timed_out
        ended = await anyio.to_thread.run_sync(finished.wait, limit, abandon_on_cancel=True)
        if not ended:
            timed_out = True
            scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        try:
            await work
        finally:
            finished.set()
    if timed_out:
        pytest.fail(f"the sample did not end within {limit:g} s of real time")


async def run(sample: Sample, world: World) -> dict[str, Any]:
    """Run ``sample`` (after the samples it continues) in ``world``; what it defined."""
    chain = [sample]
    while chain[0].directive == "continues":
        assert chain[0].previous is not None
        chain.insert(0, chain[0].previous)
    namespace = {**world.namespace, "__emulator__": world.emulator}
    async with contextlib.AsyncExitStack() as stack:
        if chain[0].setup is not None:
            namespace.update(await stack.enter_async_context(SETUPS[chain[0].setup]()))
        for step in chain:
            if step.lang == "pycon":
                run_pycon(step, namespace)
            else:
                await run_python(step, namespace)
    return namespace


# -- the tests ---------------------------------------------------------------------------------

SAMPLES: Final = [sample for path in documentation() for sample in extract(path)]


@pytest.mark.anyio
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.name)
async def test_sample_runs(
    sample: Sample, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """The block runs to its end against the emulator; a wrong sample fails here."""
    if sample.skip_reason is not None:
        pytest.skip(f"marked in the Markdown: {sample.skip_reason}")
    with world(monkeypatch, tmp_path) as here:
        await within_real_seconds(REAL_SECONDS, run(sample, here))


# -- the harness itself -------------------------------------------------------------------------


def markdown(folder: pathlib.Path, text: str) -> pathlib.Path:
    """A Markdown file ``page.md`` in ``folder`` (a ``~~~`` in ``text`` is a code fence)."""
    path = folder / "page.md"
    path.write_text(textwrap.dedent(text).replace("~~~", "```"), encoding="utf-8")
    return path


def test_every_code_sample_of_the_docs_is_collected() -> None:
    """README.md and every docs page are read; only three samples are skipped, each with why
    (FastAPI apps: FastAPI is no dependency of this project)."""
    files = {sample.path.relative_to(ROOT).as_posix() for sample in SAMPLES}
    skipped = [sample.name for sample in SAMPLES if sample.skip_reason is not None]

    assert {"README.md", "docs/index.md", "docs/tutorial.md"} <= files
    assert 7 == len({name for name in files if name.startswith("docs/how-to/")})  # not the CLI's
    assert len(SAMPLES) >= 40
    assert ["docs/how-to/webhooks.md"] * 2 + ["docs/how-to/workers.md"] == [
        name.rpartition(":")[0] for name in skipped
    ]


@pytest.mark.anyio
async def test_a_wrong_sample_fails_at_its_markdown_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """A button pressed on a job just created: the sample fails, its traceback at the .md line."""
    path = markdown(
        tmp_path,
        """
        # Buttons

        ~~~python
        async with ak.AkoolSession(api_key="...") as session:
            info = await session.create_by_prompt("a red fox in snow")
            child = await session.create_by_button(info.id, "U1")
        ~~~
        """,
    )
    [sample] = extract(path)

    with world(monkeypatch, tmp_path) as here, pytest.raises(ak.OperationNotAllowed) as caught:
        await run(sample, here)

    in_the_page = [entry.lineno + 1 for entry in caught.traceback if str(entry.path) == str(path)]
    assert [7] == in_the_page
    assert "press buttons only after the grid job completed" in str(caught.value)
    assert 1 == here.emulator.requests_per_endpoint()["createbybutton"]


@pytest.mark.anyio
async def test_anyio_run_and_sample_tests_run_on_the_tests_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """anyio.run(main) awaits main(); a sample's test_* gets the plugin's two fixtures."""
    path = markdown(
        tmp_path,
        """
        ~~~python
        seen = []


        async def main(prompt):
            async with ak.AkoolSession() as session:
                info = await (await session.generate(prompt)).wait()
            seen.append((info.status.name, len(info.upscaled_urls)))


        anyio.run(main, "a red fox in snow", backend="trio")
        ~~~

        <!-- sample: continues -->
        ~~~python
        async def test_it(akool_session, akool_emulator):
            await akool_session.get_credit()
            seen.append(akool_emulator.requests_per_endpoint()["quota"])
        ~~~
        """,
    )
    first, second = extract(path)

    with world(monkeypatch, tmp_path) as here:
        defined = await run(second, here)

    assert (None, "continues") == (first.directive, second.directive)
    assert 1 == here.emulator.creates_for("a red fox in snow")
    assert [("COMPLETED", 4), 1] == defined["seen"]


@pytest.mark.anyio
async def test_a_pycon_block_is_a_doctest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """Output that differs from what the page shows fails, with doctest's report."""
    path = markdown(tmp_path, "~~~pycon\n>>> ak.Scale('16:9')\n<Scale.RATIO_1_1: '1:1'>\n~~~\n")
    [sample] = extract(path)

    with world(monkeypatch, tmp_path) as here, pytest.raises(AssertionError) as caught:
        await run(sample, here)

    assert "Expected:\n    <Scale.RATIO_1_1: '1:1'>\nGot:\n    <Scale.RATIO_16_9: '16:9'>" in str(
        caught.value
    )


@pytest.mark.anyio
async def test_a_sample_that_never_ends_fails_in_real_time() -> None:
    """The real-time bound ends a sample stuck forever, virtual clock or not."""
    with pytest.raises(pytest.fail.Exception) as caught:
        await within_real_seconds(0.2, anyio.sleep_forever())

    assert "the sample did not end within 0.2 s of real time" == str(caught.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- sample: skip -->\n~~~python\npass\n~~~\n", "'skip' needs a reason"),
        ("<!-- sample: setup=nothing -->\n~~~python\npass\n~~~\n", "unknown setup 'nothing'"),
        ("<!-- sample: continues -->\n~~~python\npass\n~~~\n", "'continues' on the first"),
        ("<!-- sample: run twice -->\n~~~python\npass\n~~~\n", "unknown sample directive"),
        ("<!-- sample: -->\n~~~python\npass\n~~~\n", "an empty sample directive"),
        ("<!-- sample: skip why -->\n\n~~~python\npass\n~~~\n", "on the line right before"),
        ("<!-- sample: skip why -->\n~~~bash\nls\n~~~\n", "before a 'bash' block"),
    ],
    ids=["no-reason", "setup", "continues-first", "unknown", "empty", "stray", "not-python"],
)
def test_directives_are_checked(tmp_path: pathlib.Path, text: str, problem: str) -> None:
    """A directive that would do nothing, or something unknown, is an error, not ignored."""
    path = markdown(tmp_path, text)

    with pytest.raises(DirectiveError) as caught:
        extract(path)

    assert str(caught.value).startswith(f"{path}:")
    assert problem in str(caught.value)


def test_install_lines_install_from_the_repository() -> None:
    """akool-async is not on PyPI: no page tells a reader to pip install it by that name."""
    unpublished = re.compile(r"pip install[^\n`]*akool-async")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in documentation()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if unpublished.search(line)
    ]

    assert [] == found
