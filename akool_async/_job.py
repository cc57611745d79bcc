"""ImageJob: a handle on one Akool job, to wait on, follow up, and download."""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from ._constants import DEFAULT_MAX_BYTES
from ._download import Download
from ._errors import (
    ButtonUnavailable,
    InvalidInput,
    InvalidResponse,
    ResultExpired,
    SubmissionUnknown,
)
from ._models import Button, ImageInfo, JobKind
from ._paths import files_in, image_suffix, make_folder, names_folder, safe_stem
from ._validate import check_url

if TYPE_CHECKING:
    from ._engine import Engine
    from ._session import AkoolSession

__all__ = ["DEFAULT_MAX_BYTES", "ImageJob"]

logger = logging.getLogger("akool_async")

_QUADRANTS: Final = (1, 2, 3, 4)
_SHOWN_URL: Final = 120


class ImageJob:
    """A handle on one Akool image job. Made by `AkoolSession.generate`, ``.job(id)``, or a
    follow-up (`upscale`, `vary`). Handles are cheap; many handles on one id share its polls.

    Attributes:
        id: The job's id.
        session: The session the handle belongs to.
        last_download: The most recent `Download` this handle made, with its sha256.
    """

    __slots__ = ("_id_from_akool", "_info", "id", "last_download", "session")

    def __init__(
        self, session: AkoolSession, image_id: str, *, info: ImageInfo | None = None
    ) -> None:
        if info is not None and info.id != image_id:
            raise InvalidInput(f"info is for job {info.id!r}, not {image_id!r}")
        self.session = session
        self.id = image_id
        self._info = info
        # A handle made with info (a create's answer, a follow-up's) has an id Akool sent; one
        # made from an id alone (`session.job`) has the caller's.
        self._id_from_akool = info is not None
        self.last_download: Download | None = None

    def _engine(self, *, required: bool = True) -> Engine | None:
        # The one seam between a handle and its session's private engine: a handle is the
        # session's public face for one job, not a separate client of it.
        return self.session._engine_for_handles(required=required)  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]

    @property
    def info(self) -> ImageInfo | None:
        """The job as last seen by this session, or None if it has not been read yet.

        The handle keeps what it last saw, so this stays set after the session lets go of an
        ended job (a long-lived session keeps only recent ones in memory).
        """
        engine = self._engine(required=False)
        seen = engine.last_seen(self.id) if engine is not None else None
        if seen is not None:
            self._info = seen
        return self._info

    @property
    def uses_session_webhook(self) -> bool:
        """Whether this session created the job with its own webhook URL: a callback then
        announces its end, and status reads are only a safety net for a lost callback."""
        engine = self._engine(required=False)
        return engine is not None and engine.uses_webhook(self.id)

    async def refresh(self) -> ImageInfo:
        """Read the job's current state from Akool (one request); waiters learn from it too."""
        info = await self.session.get_image_info(self.id)
        self._info = info
        self._require_engine().take_in(self.id, info)
        return info

    def _require_engine(self) -> Engine:
        engine = self._engine()
        assert engine is not None  # noqa: S101 - required=True raised otherwise
        return engine

    async def wait(self, timeout: float | None = None) -> ImageInfo:  # noqa: ASYNC109 - the contract
        """Wait until the job's result is complete, and return it.

        A grid (a prompt job or a V1..V4 variation) is complete when Akool says completed *and*
        its four quadrant URLs are there; an upscale when it says completed and ``image`` is set.
        Many waiters on one job share its polls. Cancelling a wait stops its polling; the job is
        never forgotten, and a later wait picks up where this one stopped. A status read that
        fails (an outage, however long) never ends the wait: the job is read again after a
        backoff, and the error shows in a ``read_failed`` `JobEvent` and, at the deadline, in
        `WaitTimeout.last_error`. A job that ended a while ago and that the session has since
        let go of (it keeps only recent ones in memory) costs one status read.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            The completed job.

        Raises:
            JobFailed: Akool reported the job as failed.
            WaitTimeout: The deadline passed (a `TimeoutError`); the job goes on, and
                ``session.job(id).wait()`` resumes. Its ``last_error`` says why the job's last
                status read failed, if it did.
            APIError: Akool refused to describe the job (an unknown id, say).
            SessionClosed: The session closed first (or before the call).
            SessionStateError: The session has not been opened.
        """
        if timeout is not None and not timeout >= 0:
            raise InvalidInput(f"timeout must be None or 0 or more seconds (got {timeout!r})")
        info = await self._require_engine().wait(self.id, timeout)
        self._info = info
        return info

    async def upscale(self, n: int, *, webhook_url: str | None = None) -> ImageJob:
        """Press U*n*: a 4K upscale of quadrant ``n`` (1 top left .. 4 bottom right). Costs credits.

        Waits for this grid to finish if it has not. The button is checked against what Akool
        offers (``buttons``) and what was pressed (``used_buttons``, and by this session) before
        anything is sent.

        Raises:
            InvalidInput: ``n`` is not 1..4.
            ButtonUnavailable: The job offers no such button (used already, or not a grid).
            JobFailed: This job failed, so it has no quadrants.
            SubmissionUnknown: The create may or may not have reached Akool.
        """
        return await self._press(_button("U", n), webhook_url)

    async def vary(self, n: int, *, webhook_url: str | None = None) -> ImageJob:
        """Press V*n*: a new grid varying quadrant ``n``. Costs credits.

        Takes and raises what `upscale` does.
        """
        return await self._press(_button("V", n), webhook_url)

    async def _press(self, button: Button, webhook_url: str | None) -> ImageJob:
        session = self.session
        info = await self.wait()
        engine = self._require_engine()
        if button.value in info.used_buttons or engine.buttons.claimed(self.id, button.value):
            raise ButtonUnavailable(f"{button.value} was already pressed on job {self.id}")
        if button.value not in info.buttons:
            offered = ", ".join(info.buttons) or "none (only a finished prompt grid has buttons)"
            raise ButtonUnavailable(
                f"{button.value} is not available on job {self.id}; Akool offers: {offered}"
            )
        # Claimed before the request, so a concurrent press of the same button is refused.
        engine.buttons.claim(self.id, button.value)
        try:
            child = await session.create_by_button(self.id, button, webhook_url=webhook_url)
        except SubmissionUnknown:
            raise  # it may have been pressed: keep it claimed
        except BaseException:
            engine.buttons.unclaim(self.id, button.value)
            raise
        kind = JobKind.of_button(button)
        logger.info("pressed %s on %s: job %s (%s)", button.value, self.id, child.id, kind.value)
        return ImageJob(session, child.id, info=child)

    async def download(
        self, dest: str | os.PathLike[str] = ".", *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> pathlib.Path:
        """Wait for the result and download it: the grid's composite, or the upscale.

        Streams to a temporary file beside the destination and renames it into place, checks it
        is the image it claims to be, and records its sha256 in `last_download`.

        ``dest`` names a folder when it ends with a path separator (``"out/"``) or is an existing
        folder, or when it does not exist and its last part has no suffix (``"out"``,
        ``Path("results")``); the file is then named ``{id}{suffix}`` inside it, the suffix being
        the URL's when it is ``.png``, ``.jpg``, ``.jpeg``, ``.webp`` or ``.gif``, else ``.png``.
        Otherwise (an existing file, or a last part with a suffix, such as ``"fox.png"``) ``dest``
        is the file to write. Missing folders are created: the folder itself, or a file's parents.
        A name taken from the job id is used only if the id is a plain stem (1 to 64 ASCII
        letters, digits, ``-`` and ``_``, no Windows device name) and the file stays inside the
        folder; both are checked before anything is sent, created or written.

        Args:
            dest: A folder to save into, or the file to write (see above).
            max_bytes: Refuse bodies larger than this.

        Returns:
            The path written.

        Raises:
            ResultExpired: Akool's URLs live seven days, and this one is gone (by the job's
                ``create_time``, before any request, or by the URL's answer).
            ResponseTooLarge: The body is larger than ``max_bytes``.
            NotAnImage: The body is not a complete image of the type it was sent as.
            DownloadError: Another 4xx answer.
            InvalidResponse: The job completed without an image URL, or with one that is not an
                absolute http(s) URL, or (for a folder) the id Akool sent cannot be a file name.
            TransportError: The download failed after retries.
            InvalidInput: (For a folder) the id given to `AkoolSession.job` cannot be a file
                name; a folder cannot be created (a file is in the way, no permission); or a
                symbolic link of the file's name leads outside the folder. Nothing was written.
            JobFailed, WaitTimeout, APIError, SessionClosed: As for `wait`.
        """
        # Which it is, and whether the id can name a file, is settled before any request.
        stem = self._stem() if await names_folder(dest) else None
        info = await self.wait()
        if not info.image:
            raise InvalidResponse(f"job {self.id} is completed but Akool gave no image URL")
        self._check_urls([info.image])
        self._check_fresh(info, info.image)
        if stem is None:
            path = pathlib.Path(dest)
            await make_folder(path.parent)
        else:
            [path] = await files_in(dest, [stem + image_suffix(info.image)])
        self.last_download = await self.session.download_url(info.image, path, max_bytes=max_bytes)
        return self.last_download.path

    async def download_quadrants(
        self, folder: str | os.PathLike[str] = ".", *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> list[pathlib.Path]:
        """Wait for the grid and download its four quadrant images into ``folder``.

        Files are named ``{id}-1.png`` .. ``{id}-4.png`` (U1..U4 order; the suffix follows each
        URL as in `download`). ``folder`` is created if it does not exist.

        Raises:
            ButtonUnavailable: This job is an upscale, which has no quadrants.
            InvalidResponse: The grid completed without its four quadrant http(s) URLs, or the
                id Akool sent for it cannot be a file name.
            InvalidInput: The id given to `AkoolSession.job` cannot be a file name, ``folder``
                cannot be created or is a file, or a symbolic link of a file's name leads
                outside it. Nothing was written.
            ResultExpired, DownloadError, TransportError, JobFailed, WaitTimeout: As for
                `download`.
        """
        stem = self._stem()
        info = await self.wait()
        if info.is_upscale:
            raise ButtonUnavailable(f"job {self.id} is an upscale: it has no quadrants")
        if len(info.upscaled_urls) < len(_QUADRANTS):
            raise InvalidResponse(f"job {self.id} is completed without its four quadrant URLs")
        urls = info.upscaled_urls[: len(_QUADRANTS)]
        self._check_urls(urls)
        self._check_fresh(info, urls[0])
        names = [
            f"{stem}-{number}{image_suffix(url)}"
            for number, url in zip(_QUADRANTS, urls, strict=True)
        ]
        paths: list[pathlib.Path] = []
        for url, path in zip(urls, await files_in(folder, names), strict=True):
            download = await self.session.download_url(url, path, max_bytes=max_bytes)
            paths.append(download.path)
        return paths

    def _stem(self) -> str:
        """The job id as a file name stem: InvalidResponse if Akool sent it, else InvalidInput."""
        return safe_stem(self.id, what="job id", from_server=self._id_from_akool)

    def _check_urls(self, urls: Sequence[str]) -> None:
        """Refuse a result URL that is not an absolute http(s) URL (``file:``, ``javascript:``,
        unencodable text): it came from the server, so it is an `InvalidResponse`."""
        for url in urls:
            try:
                check_url("url", url)
            except InvalidInput:
                shown = url if len(url) <= _SHOWN_URL else f"{url[:_SHOWN_URL]}..."
                raise InvalidResponse(
                    f"Akool's result URL for job {self.id} is not an absolute http(s) URL: "
                    f"{shown!r}"
                ) from None

    def _check_fresh(self, info: ImageInfo, url: str) -> None:
        """Refuse a result past Akool's seven days before any folder or request is made."""
        expires = info.expires_at
        if expires is not None and datetime.now(UTC) >= expires:
            # Akool's own rule, checked against the wall clock because create_time is one.
            raise ResultExpired(
                f"the result of job {self.id} expired at {expires:%Y-%m-%d %H:%M} UTC: Akool "
                "keeps results for seven days",
                url=url,
            )

    def __repr__(self) -> str:
        info = self.info
        status = info.status.name if info is not None else "UNKNOWN"
        return f"ImageJob(id={self.id!r}, status={status})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageJob):
            return NotImplemented
        return self.session is other.session and self.id == other.id

    def __hash__(self) -> int:
        return hash((id(self.session), self.id))


def _button(kind: str, n: object) -> Button:
    if isinstance(n, bool) or not isinstance(n, int) or n not in _QUADRANTS:
        raise InvalidInput(
            f"n must be 1, 2, 3 or 4, the quadrant (1 top left, 2 top right, 3 bottom left, "
            f"4 bottom right); got {n!r}"
        )
    return Button(f"{kind}{n}")
