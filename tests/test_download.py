"""download(): streaming, atomic, checksummed, retried where a retry can help, and nothing else."""

from __future__ import annotations

import gzip
import hashlib
import logging
import pathlib
import pickle
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import akool_async as ak
from akool_async._asgi import Receive, Scope, Send
from akool_async._download import (
    Download,
    DownloadError,
    NotAnImage,
    ResponseTooLarge,
    ResultExpired,
    download,
)
from akool_async._serve import serve_asgi
from akool_async.testing import AkoolEmulator
from akool_async.testing._images import grid_png, quadrant_png

pytestmark = pytest.mark.anyio

API = "/api/open/v3"
CREATE = f"{API}/content/image/createbyprompt"
INFO = f"{API}/content/image/infobymodelid"
PROMPT = "a red fox in fresh snow, watercolour"
URL = "https://cdn.akool.test/results/fox.png"
RETRY = ak.RetryPolicy(attempts=3, wait_initial=1.0, wait_max=4.0, jitter=False)
# Over 2 KiB: the streaming tests cut it into more than eight chunks of 256 bytes.
PNG = quadrant_png(PROMPT, ak.Scale.RATIO_1_1, 1, seed=3, long_side=96)
# The smallest byte strings each format check accepts: magic at the start, the ending at the end.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(40) + b"\xff\xd9"
WEBP = b"RIFF" + (4 + 40).to_bytes(4, "little") + b"WEBPVP8 " + bytes(36)
GIF = b"GIF89a" + bytes(40) + b";"


def listing(directory: pathlib.Path) -> list[str]:
    """The names in a directory, hidden part files included."""
    return sorted(path.name for path in directory.iterdir())


def read(path: pathlib.Path) -> bytes:
    return path.read_bytes()


class Script:
    """An httpx.MockTransport handler that answers from a list (the last answer repeats)."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[], Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        result: httpx.Response = answer()
        return result

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def png_answer(
    body: bytes | AsyncIterator[bytes] = PNG,
    *,
    length: int | None = None,
    content_type: str = "image/png",
) -> httpx.Response:
    """A 200 answer; ``length`` sets Content-Length (bytes bodies get theirs anyway)."""
    headers = {"content-type": content_type}
    if length is not None:
        headers["content-length"] = str(length)
    return httpx.Response(200, headers=headers, content=body)


async def fetch(script: Script, dest: pathlib.Path, url: str = URL, **kwargs: Any) -> Download:
    async with script.client() as http:
        return await download(http, url, dest, retry=RETRY, **kwargs)


async def finished_grid(http: httpx.AsyncClient, emulator: AkoolEmulator) -> dict[str, Any]:
    """Create a grid job on the emulator, let it finish, and return its info's data."""
    key = {"x-api-key": emulator.api_key}
    created = await http.post(CREATE, headers=key, json={"prompt": PROMPT, "scale": "1:1"})
    job_id = created.json()["data"]["_id"]
    for _ in range(100):
        info: dict[str, Any] = (
            await http.get(INFO, headers=key, params={"image_model_id": job_id})
        ).json()["data"]
        if len(info["upscaled_urls"]) == 4:
            return info
        await anyio.sleep(0.25)
    raise AssertionError("the emulator's job never finished")


# -- against the emulator's real PNGs -----------------------------------------------------------


async def test_grid_download_has_the_rendered_bytes_and_their_sha256(
    tmp_path: pathlib.Path,
) -> None:
    """The file holds exactly the emulator's rendered grid; sha256 and size describe it."""
    emulator = AkoolEmulator(time_scale=0.01)
    async with emulator.client() as http:
        info = await finished_grid(http, emulator)
        result = await download(http, info["image"], tmp_path / "grid.png", retry=RETRY)

    job = emulator.jobs[info["_id"]]
    rendered = grid_png(job.prompt, job.scale, seed=job.seed)
    written = read(tmp_path / "grid.png")
    assert rendered == written
    assert (
        Download(
            path=tmp_path / "grid.png",
            url=info["image"],
            sha256=hashlib.sha256(rendered).hexdigest(),
            size=len(rendered),
            content_type="image/png",
        )
        == result
    )
    assert hashlib.sha256(written).hexdigest() == result.sha256
    assert ["grid.png"] == listing(tmp_path)


async def test_four_quadrants_download_concurrently(tmp_path: pathlib.Path) -> None:
    """U1..U4's images, fetched at once, each equal the emulator's rendered quadrant."""
    emulator = AkoolEmulator(time_scale=0.01)
    results: dict[int, Download] = {}

    async def one(http: httpx.AsyncClient, quadrant: int, url: str) -> None:
        dest = tmp_path / f"u{quadrant}.png"
        results[quadrant] = await download(http, url, dest, retry=RETRY)

    async with emulator.client() as http:
        info = await finished_grid(http, emulator)
        async with anyio.create_task_group() as tg:
            for quadrant, url in enumerate(info["upscaled_urls"], start=1):
                tg.start_soon(one, http, quadrant, url)

    job = emulator.jobs[info["_id"]]
    for quadrant in (1, 2, 3, 4):
        rendered = quadrant_png(job.prompt, job.scale, quadrant, seed=job.seed)
        assert rendered == read(tmp_path / f"u{quadrant}.png")
        assert hashlib.sha256(rendered).hexdigest() == results[quadrant].sha256
    assert ["u1.png", "u2.png", "u3.png", "u4.png"] == listing(tmp_path)


async def test_url_older_than_seven_days_is_result_expired(tmp_path: pathlib.Path) -> None:
    """Seven days on, the emulator answers 403 as Akool's CDN does: ResultExpired, one request."""
    emulator = AkoolEmulator(time_scale=0.01)
    async with emulator.client() as http:
        info = await finished_grid(http, emulator)
        await anyio.sleep(7 * 24 * 3600)
        with pytest.raises(ResultExpired) as caught:
            await download(http, info["image"], tmp_path / "grid.png", retry=RETRY)

    assert (403, info["image"]) == (caught.value.status_code, caught.value.url)
    assert "7 days" in str(caught.value)
    assert 1 == emulator.requests_per_endpoint()["image"]
    assert [] == listing(tmp_path)


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", dict[str, Any]()), id="asyncio"),
        pytest.param(("trio", dict[str, Any]()), id="trio"),
    ],
)
async def test_grid_over_a_real_loopback_socket(tmp_path: pathlib.Path) -> None:
    """Served by hypercorn on 127.0.0.1 in real time, the grid arrives whole and checksummed."""
    emulator = AkoolEmulator(time_scale=0.001)
    with anyio.fail_after(30):
        async with emulator.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
            info = await finished_grid(http, emulator)
            result = await download(http, info["image"], tmp_path / "grid.png", retry=RETRY)

    job = emulator.jobs[info["_id"]]
    rendered = grid_png(job.prompt, job.scale, seed=job.seed)
    assert info["image"].startswith(base_url)
    assert rendered == read(tmp_path / "grid.png")
    assert (hashlib.sha256(rendered).hexdigest(), len(rendered)) == (result.sha256, result.size)


class Streamer:
    """An ASGI app answering ``head`` and then 12 MiB of zeros, chunked: no Content-Length."""

    def __init__(self, head: bytes, content_type: str) -> None:
        self.head = head
        self.content_type = content_type

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", self.content_type.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.head, "more_body": True})
        for _ in range(192):
            await send({"type": "http.response.body", "body": bytes(65536), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("head", "content_type", "expected"),
    [
        (PNG[:100], "image/png", ResponseTooLarge),
        (b"<!DOCTYPE html>" + bytes(100), "text/html", NotAnImage),
    ],
    ids=["too-large", "not-an-image"],
)
@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", dict[str, Any]()), id="asyncio"),
        pytest.param(("trio", dict[str, Any]()), id="trio"),
    ],
)
async def test_refusing_mid_stream_over_a_real_socket_ends_cleanly(
    tmp_path: pathlib.Path, head: bytes, content_type: str, expected: type[DownloadError]
) -> None:
    """A chunked body refused mid-stream leaves no file and no unclosed httpx generator."""
    with anyio.fail_after(30):
        async with (
            serve_asgi(Streamer(head, content_type)) as base_url,
            httpx.AsyncClient() as http,
        ):
            url = f"{base_url}/big.png"
            with pytest.raises(expected):
                await download(http, url, tmp_path / "big.png", retry=RETRY, max_bytes=1 << 18)

    assert [] == listing(tmp_path)


# -- atomic replacement --------------------------------------------------------------------------


async def test_existing_file_is_replaced_only_when_the_new_one_is_whole(
    tmp_path: pathlib.Path,
) -> None:
    """While the new image streams in, readers still see the old file; then the whole new one."""
    dest = tmp_path / "fox.png"
    dest.write_bytes(b"the old picture")
    seen_mid_stream: list[bytes] = []

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(PNG), 256):
            if start:
                seen_mid_stream.append(read(dest))
                await anyio.sleep(1)
            yield PNG[start : start + 256]

    script = Script(lambda: png_answer(slowly(), length=len(PNG)))
    result = await fetch(script, dest)

    assert len(seen_mid_stream) > 1
    assert {b"the old picture"} == set(seen_mid_stream)
    assert PNG == read(dest)
    assert len(PNG) == result.size
    assert ["fox.png"] == listing(tmp_path)


async def test_failed_download_leaves_the_existing_file_untouched(tmp_path: pathlib.Path) -> None:
    """A body that is not an image never replaces what is already there."""
    dest = tmp_path / "fox.png"
    dest.write_bytes(PNG)

    with pytest.raises(NotAnImage):
        await fetch(Script(httpx.Response(200, html="<html>Oops</html>")), dest)

    assert PNG == read(dest)
    assert ["fox.png"] == listing(tmp_path)


@pytest.mark.parametrize("after_chunks", [1, 4, 8])
async def test_cancellation_mid_stream_leaves_no_file(
    tmp_path: pathlib.Path, after_chunks: int
) -> None:
    """Cancelled after some chunks, the part file that existed is gone and dest never appears."""
    seen_when_cancelled: list[str] = []

    async def cancelled_midway(scope: anyio.CancelScope) -> AsyncIterator[bytes]:
        for number, start in enumerate(range(0, len(PNG), 256)):
            if number == after_chunks:
                seen_when_cancelled.extend(listing(tmp_path))
                scope.cancel()
            await anyio.sleep(1)
            yield PNG[start : start + 256]

    with anyio.CancelScope() as scope:
        script = Script(lambda: png_answer(cancelled_midway(scope)))
        await fetch(script, tmp_path / "fox.png")

    assert scope.cancelled_caught
    [part_name] = seen_when_cancelled
    assert (True, True) == (part_name.startswith(".fox.png."), part_name.endswith(".part"))
    assert [] == listing(tmp_path)


async def test_deadline_during_download_leaves_no_file(tmp_path: pathlib.Path) -> None:
    """A move_on_after deadline, wherever it lands in a slow download, leaves nothing behind."""

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(PNG), 256):
            await anyio.sleep(1)
            yield PNG[start : start + 256]

    script = Script(lambda: png_answer(slowly()))
    with anyio.move_on_after(2.5) as scope:
        await fetch(script, tmp_path / "fox.png")

    assert scope.cancelled_caught
    assert [] == listing(tmp_path)


# -- retries -------------------------------------------------------------------------------------


async def test_truncated_body_is_retried_then_succeeds(tmp_path: pathlib.Path) -> None:
    """A body shorter than its Content-Length is a transient failure: sent again, then kept."""
    truncated = png_answer(PNG[:200], length=len(PNG))
    script = Script(truncated, png_answer())

    result = await fetch(script, tmp_path / "fox.png")

    assert 2 == len(script.requests)
    assert PNG == read(tmp_path / "fox.png")
    assert hashlib.sha256(PNG).hexdigest() == result.sha256


async def test_always_truncated_body_ends_as_remote_protocol_error(tmp_path: pathlib.Path) -> None:
    """When every try is cut short, the SDK's RemoteProtocolError says so and no file is left."""
    script = Script(lambda: png_answer(PNG[:200], length=len(PNG)))

    with pytest.raises(ak.RemoteProtocolError, match=f"sent 200 of {len(PNG)} bytes"):
        await fetch(script, tmp_path / "fox.png")

    assert RETRY.attempts == len(script.requests)
    assert [] == listing(tmp_path)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_throttling_and_server_errors_are_retried(
    tmp_path: pathlib.Path, status: int
) -> None:
    """429 and 5xx are sent again after the backoff; the second answer's image is kept."""
    script = Script(httpx.Response(status, text="busy"), png_answer())
    started = anyio.current_time()

    await fetch(script, tmp_path / "fox.png")

    assert 2 == len(script.requests)
    assert pytest.approx(RETRY.wait_initial) == anyio.current_time() - started
    assert PNG == read(tmp_path / "fox.png")


async def test_retry_after_is_honoured(tmp_path: pathlib.Path) -> None:
    """A 503 with Retry-After: 7 waits 7 seconds before the second request."""
    script = Script(httpx.Response(503, headers={"retry-after": "7"}), png_answer())
    started = anyio.current_time()

    await fetch(script, tmp_path / "fox.png")

    assert pytest.approx(7.0) == anyio.current_time() - started
    assert 2 == len(script.requests)


async def test_server_errors_until_the_last_attempt_raise_server_error(
    tmp_path: pathlib.Path,
) -> None:
    """Every attempt answering 502 ends as the SDK's ServerError with the status."""
    script = Script(httpx.Response(502))

    with pytest.raises(ak.ServerError) as caught:
        await fetch(script, tmp_path / "fox.png")

    assert (502, RETRY.attempts) == (caught.value.status_code, len(script.requests))


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectError("connection refused"), ak.ConnectError),
        (httpx.ConnectTimeout("connect timed out"), ak.RequestTimeout),
        (httpx.ReadTimeout("read timed out"), ak.RequestTimeout),
        (httpx.ReadError("connection reset by peer"), ak.RemoteProtocolError),
        (httpx.RemoteProtocolError("peer closed connection"), ak.RemoteProtocolError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
async def test_transport_failures_surface_typed_with_the_httpx_cause(
    tmp_path: pathlib.Path, raised: httpx.HTTPError, expected: type[ak.TransportError]
) -> None:
    """Retried to the last attempt, then raised as the SDK's own error from the httpx one."""
    script = Script(raised)

    with pytest.raises(expected) as caught:
        await fetch(script, tmp_path / "fox.png")

    assert RETRY.attempts == len(script.requests)
    assert raised is caught.value.__cause__
    assert "https://cdn.akool.test/results/fox.png" == caught.value.endpoint


async def test_other_transport_failures_are_not_retried(tmp_path: pathlib.Path) -> None:
    """A failure no retry can mend (a redirect loop) is a plain TransportError at once."""
    script = Script(httpx.TooManyRedirects("Exceeded maximum allowed redirects."))

    with pytest.raises(ak.TransportError) as caught:
        await fetch(script, tmp_path / "fox.png")

    assert (ak.TransportError, 1) == (type(caught.value), len(script.requests))
    assert isinstance(caught.value.__cause__, httpx.TooManyRedirects)


async def test_transport_failure_then_success(tmp_path: pathlib.Path) -> None:
    """A reset on the first try costs one retry, not the download."""
    script = Script(httpx.ReadError("connection reset by peer"), png_answer())

    await fetch(script, tmp_path / "fox.png")

    assert 2 == len(script.requests)
    assert PNG == read(tmp_path / "fox.png")


async def test_redirects_are_followed(tmp_path: pathlib.Path) -> None:
    """A CDN's redirect leads to the image."""
    moved = httpx.Response(302, headers={"location": "https://cdn2.akool.test/fox.png"})
    script = Script(moved, png_answer())

    await fetch(script, tmp_path / "fox.png")

    assert ["cdn.akool.test", "cdn2.akool.test"] == [r.url.host for r in script.requests]
    assert PNG == read(tmp_path / "fox.png")


# -- answers that are not retried ----------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_gone_results_are_result_expired_without_retries(
    tmp_path: pathlib.Path, status: int
) -> None:
    """403, 404 and 410 mean the URL has expired: one request, and the error says what to do."""
    script = Script(httpx.Response(status, text="<Error>AccessDenied</Error>"))

    with pytest.raises(ResultExpired) as caught:
        await fetch(script, tmp_path / "fox.png")

    assert 1 == len(script.requests)
    assert (status, URL) == (caught.value.status_code, caught.value.url)
    assert "Re-read the job's info" in str(caught.value)
    assert "the result is gone" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 405, 418])
async def test_other_client_errors_are_download_errors_without_retries(
    tmp_path: pathlib.Path, status: int
) -> None:
    """Any other 4xx is a plain DownloadError carrying the status; it is not retried."""
    script = Script(httpx.Response(status))

    with pytest.raises(DownloadError) as caught:
        await fetch(script, tmp_path / "fox.png")

    assert (DownloadError, status, 1) == (
        type(caught.value),
        caught.value.status_code,
        len(script.requests),
    )


async def test_declared_length_over_the_limit_is_refused_unread(tmp_path: pathlib.Path) -> None:
    """A Content-Length above max_bytes fails at once: one request, nothing written."""
    script = Script(png_answer())

    with pytest.raises(ResponseTooLarge, match="max_bytes=100"):
        await fetch(script, tmp_path / "fox.png", max_bytes=100)

    assert 1 == len(script.requests)
    assert [] == listing(tmp_path)


async def test_streamed_body_over_the_limit_is_aborted(tmp_path: pathlib.Path) -> None:
    """Without a Content-Length, the stream is cut at max_bytes and its part file removed."""
    zero_chunks_sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        yield PNG[:1000]
        while True:
            await anyio.lowlevel.checkpoint()  # as a network stream does, waiting for data
            zero_chunks_sent.append(1000)
            yield bytes(1000)

    script = Script(lambda: png_answer(endless()))

    with pytest.raises(ResponseTooLarge, match="max_bytes=10000"):
        await fetch(script, tmp_path / "fox.png", max_bytes=10_000)

    assert 1 == len(script.requests)
    assert 10 == len(zero_chunks_sent)  # the tenth took it over 10,000 bytes
    assert [] == listing(tmp_path)


# Draining stops after 1 MiB; the httpx generators left open then are finalized by the garbage
# collector, which trio reports as a ResourceWarning (encode/httpx#3686).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_stream_that_never_yields_to_the_loop_still_ends(tmp_path: pathlib.Path) -> None:
    """A body that never checkpoints cannot keep a failed download draining forever."""

    async def busy() -> AsyncIterator[bytes]:
        while True:
            yield bytes(1000)

    script = Script(lambda: png_answer(busy()))

    with pytest.raises(NotAnImage):
        await fetch(script, tmp_path / "fox.png")

    assert [] == listing(tmp_path)


async def test_html_with_status_200_is_not_an_image(tmp_path: pathlib.Path) -> None:
    """An error page answered as 200 is NotAnImage, quoting its start, and is not retried."""
    script = Script(httpx.Response(200, html="<!DOCTYPE html><html>Maintenance</html>"))

    with pytest.raises(NotAnImage, match="text/html") as caught:
        await fetch(script, tmp_path / "fox.png")

    assert 1 == len(script.requests)
    assert "<!DOCTYPE html>" in str(caught.value)
    assert [] == listing(tmp_path)


async def test_png_without_iend_of_the_declared_length_is_not_an_image(
    tmp_path: pathlib.Path,
) -> None:
    """All declared bytes arrived but the PNG has no IEND: the image itself is broken."""
    script = Script(png_answer(PNG[:-12]))

    with pytest.raises(NotAnImage, match="incomplete image/png"):
        await fetch(script, tmp_path / "fox.png")

    assert 1 == len(script.requests)
    assert [] == listing(tmp_path)


async def test_content_type_must_match_the_bytes(tmp_path: pathlib.Path) -> None:
    """A PNG sent as image/jpeg is NotAnImage: one of the two is wrong."""
    script = Script(png_answer(content_type="image/jpeg"))

    with pytest.raises(NotAnImage, match="sent as image/jpeg but is a image/png"):
        await fetch(script, tmp_path / "fox.png")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(JPEG, "image/jpeg"), (WEBP, "image/webp"), (GIF, "image/gif"), (PNG, "image/png")],
    ids=["jpeg", "webp", "gif", "png"],
)
@pytest.mark.parametrize("sent_as", [None, "application/octet-stream", "own"])
async def test_each_format_is_recognised(
    tmp_path: pathlib.Path, body: bytes, content_type: str, sent_as: str | None
) -> None:
    """PNG, JPEG, WebP and GIF are kept, typed by their bytes; a missing or generic type is fine."""
    headers = {} if sent_as is None else {"content-type": sent_as.replace("own", content_type)}
    script = Script(httpx.Response(200, headers=headers, content=body))

    result = await fetch(script, tmp_path / "picture")

    assert (content_type, len(body)) == (result.content_type, result.size)
    assert body == read(tmp_path / "picture")


async def test_encoded_body_is_decoded_and_checked(tmp_path: pathlib.Path) -> None:
    """A server that gzips anyway: Content-Length counts gzip bytes, the file holds the image."""
    packed = gzip.compress(PNG)
    headers = {"content-type": "image/png", "content-encoding": "gzip"}
    script = Script(httpx.Response(200, headers=headers, content=packed))

    result = await fetch(script, tmp_path / "fox.png")

    assert (len(PNG), PNG) == (result.size, read(tmp_path / "fox.png"))


async def test_image_jpg_is_taken_for_image_jpeg(tmp_path: pathlib.Path) -> None:
    """The common misspelling image/jpg agrees with JPEG bytes."""
    script = Script(httpx.Response(200, headers={"content-type": "image/jpg"}, content=JPEG))

    result = await fetch(script, tmp_path / "picture.jpg")

    assert "image/jpeg" == result.content_type


@pytest.mark.parametrize(
    "body",
    [JPEG[:-2], WEBP[:-1], GIF[:-1], PNG[:-1], PNG[:15], b""],
    ids=["jpeg-no-eoi", "webp-short", "gif-no-trailer", "png-cut", "png-head-only", "empty"],
)
async def test_incomplete_images_are_not_images(tmp_path: pathlib.Path, body: bytes) -> None:
    """An image whose ending is missing (its length being as declared) is NotAnImage."""
    script = Script(httpx.Response(200, content=body))

    with pytest.raises(NotAnImage):
        await fetch(script, tmp_path / "picture")

    assert 1 == len(script.requests)
    assert [] == listing(tmp_path)


# -- arguments, options and what is said ---------------------------------------------------------


async def test_missing_directory_is_invalid_input_before_any_request(
    tmp_path: pathlib.Path,
) -> None:
    """The destination's directory must exist; the error names it and nothing is sent."""
    script = Script(png_answer())

    with pytest.raises(ak.InvalidInput, match="nowhere") as caught:
        await fetch(script, tmp_path / "nowhere" / "fox.png")

    assert "does not exist" in str(caught.value)
    assert [] == script.requests


async def test_directory_as_dest_is_invalid_input(tmp_path: pathlib.Path) -> None:
    """dest names the file to write, not a directory to write into."""
    script = Script(png_answer())

    with pytest.raises(ak.InvalidInput, match="is a directory"):
        await fetch(script, tmp_path)

    assert [] == script.requests


@pytest.mark.parametrize("url", ["ftp://cdn.akool.test/fox.png", "fox.png", ""])
async def test_non_http_url_is_invalid_input(tmp_path: pathlib.Path, url: str) -> None:
    """Only absolute http(s) URLs are fetched."""
    script = Script(png_answer())

    with pytest.raises(ak.InvalidInput, match="http"):
        await fetch(script, tmp_path / "fox.png", url=url)

    assert [] == script.requests


async def test_max_bytes_below_one_is_invalid_input(tmp_path: pathlib.Path) -> None:
    """max_bytes=0 could accept nothing; it is refused before any request."""
    script = Script(png_answer())

    with pytest.raises(ak.InvalidInput, match="max_bytes"):
        await fetch(script, tmp_path / "fox.png", max_bytes=0)

    assert [] == script.requests


async def test_timeout_and_headers_are_sent(tmp_path: pathlib.Path) -> None:
    """The timeout given applies to the request; identity encoding keeps lengths comparable."""
    script = Script(png_answer())

    await fetch(script, tmp_path / "fox.png", timeout=httpx.Timeout(3.0, connect=1.0))

    [request] = script.requests
    assert {"connect": 1.0, "read": 3.0, "write": 3.0, "pool": 3.0} == request.extensions["timeout"]
    assert ("identity", "GET") == (request.headers["accept-encoding"], request.method)


async def test_logs_and_errors_leave_out_the_query(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed URL's query reaches no log line or error message; the error keeps the URL."""
    caplog.set_level(logging.DEBUG, logger="akool_async")
    signed = f"{URL}?X-Amz-Signature=s3cr3t"

    result = await fetch(Script(png_answer()), tmp_path / "fox.png", url=signed)
    with pytest.raises(ResultExpired) as caught:
        await fetch(Script(httpx.Response(410)), tmp_path / "fox.png", url=signed)

    assert f"downloaded {URL}: {len(PNG)} bytes, sha256 {result.sha256}" in caplog.messages
    assert signed == caught.value.url
    assert "s3cr3t" not in str(caught.value)
    assert not [message for message in caplog.messages if "s3cr3t" in message]


async def test_retries_are_logged_as_warnings(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry says what failed and when it tries again."""
    script = Script(httpx.Response(503), png_answer())

    await fetch(script, tmp_path / "fox.png")

    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"download of {URL} failed ({URL} answered HTTP 503); retry 1 of 2 in 1.00 s" == (
        record.getMessage()
    )


def test_download_errors_survive_pickling() -> None:
    """Errors cross process boundaries with their url and status intact."""
    error = ResultExpired("gone", url=URL, status_code=410)

    copy = pickle.loads(pickle.dumps(error))

    assert (ResultExpired, "gone", URL, 410) == (
        type(copy),
        str(copy),
        copy.url,
        copy.status_code,
    )
    assert isinstance(copy, ak.AkoolError)
