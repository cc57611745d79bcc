"""ImageJob: a handle on one Akool job, to wait on, follow up, and download."""

from __future__ import annotations

import logging
import os
import pathlib
import posixpath
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import anyio

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

if TYPE_CHECKING:
    from ._engine import Engine
    from ._session import AkoolSession

__all__ = ["DEFAULT_MAX_BYTES", "ImageJob"]

logger = logging.getLogger("akool_async")

_QUADRANTS: Final = (1, 2, 3, 4)
_IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})


class ImageJob:
    """A handle on one Akool image job. Made by `AkoolSession.generate`, ``.job(id)``, or a
    follow-up (`upscale`, `vary`). Handles are cheap; many handles on one id share its polls.

    Attributes:
        id: The job's id.
        session: The session the handle belongs to.
        last_download: The most recent `Download` this handle made, with its sha256.
    """

    __slots__ = ("_info", "id", "last_download", "session")

    def __init__(
        self, session: AkoolSession, image_id: str, *, info: ImageInfo | None = None
    ) -> None:
        if info is not None and info.id != image_id:
            raise InvalidInput(f"info is for job {info.id!r}, not {image_id!r}")
        self.session = session
        self.id = image_id
        self._info = info
        self.last_download: Download | None = None

    def _engine(self, *, required: bool = True) -> Engine | None:
        # The one seam between a handle and its session's private engine: a handle is the
        # session's public face for one job, not a separate client of it.
        return self.session._engine_for_handles(required=required)  # noqa: SLF001  # pyright: ignore[reportPrivateUsage]

    @property
    def info(self) -> ImageInfo | None:
        """The job as last seen by this session, or None if it has not been read yet."""
        engine = self._engine(required=False)
        seen = engine.last_seen(self.id) if engine is not None else None
        return seen if seen is not None else self._info

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
        never forgotten, and a later wait picks up where this one stopped.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            The completed job.

        Raises:
            JobFailed: Akool reported the job as failed.
            WaitTimeout: The deadline passed (a `TimeoutError`); the job goes on, and
                ``session.job(id).wait()`` resumes.
            APIError: Akool refused to describe the job (an unknown id, say).
            SessionClosed: The session closed first (or before the call).
            SessionStateError: The session has not been opened.
        """
        if timeout is not None and not timeout >= 0:
            raise InvalidInput(f"timeout must be None or 0 or more seconds (got {timeout!r})")
        return await self._require_engine().wait(self.id, timeout)

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
        if button.value in info.used_buttons or engine.claimed(self.id, button.value):
            raise ButtonUnavailable(f"{button.value} was already pressed on job {self.id}")
        if button.value not in info.buttons:
            offered = ", ".join(info.buttons) or "none (only a finished prompt grid has buttons)"
            raise ButtonUnavailable(
                f"{button.value} is not available on job {self.id}; Akool offers: {offered}"
            )
        # Claimed before the request, so a concurrent press of the same button is refused.
        engine.claim_button(self.id, button.value)
        try:
            child = await session.create_by_button(self.id, button, webhook_url=webhook_url)
        except SubmissionUnknown:
            raise  # it may have been pressed: keep it claimed
        except BaseException:
            engine.unclaim_button(self.id, button.value)
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

        Args:
            dest: A folder (the file is named after the job's id) or a file path.
            max_bytes: Refuse bodies larger than this.

        Returns:
            The path written.

        Raises:
            ResultExpired: Akool's URLs live seven days, and this one is gone (by the job's
                ``create_time``, before any request, or by the URL's answer).
            ResponseTooLarge: The body is larger than ``max_bytes``.
            NotAnImage: The body is not a complete image of the type it was sent as.
            DownloadError: Another 4xx answer.
            InvalidResponse: The job completed without an image URL.
            TransportError: The download failed after retries.
            InvalidInput: ``dest``'s folder does not exist.
            JobFailed, WaitTimeout, APIError, SessionClosed: As for `wait`.
        """
        info = await self.wait()
        if not info.image:
            raise InvalidResponse(f"job {self.id} is completed but Akool gave no image URL")
        path = await _destination(dest, self.id, info.image)
        self.last_download = await self._fetch(info, info.image, path, max_bytes)
        return self.last_download.path

    async def download_quadrants(
        self, folder: str | os.PathLike[str] = ".", *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> list[pathlib.Path]:
        """Wait for the grid and download its four quadrant images into ``folder``.

        Files are named ``{id}-1.png`` .. ``{id}-4.png`` (U1..U4 order).

        Raises:
            ButtonUnavailable: This job is an upscale, which has no quadrants.
            InvalidResponse: The grid completed without its four quadrant URLs.
            InvalidInput: ``folder`` does not exist or is not a folder.
            ResultExpired, DownloadError, TransportError, JobFailed, WaitTimeout: As for
                `download`.
        """
        info = await self.wait()
        if info.is_upscale:
            raise ButtonUnavailable(f"job {self.id} is an upscale: it has no quadrants")
        if len(info.upscaled_urls) < len(_QUADRANTS):
            raise InvalidResponse(f"job {self.id} is completed without its four quadrant URLs")
        base = pathlib.Path(folder)
        if not await anyio.Path(base).is_dir():
            raise InvalidInput(f"folder {str(base)!r} does not exist or is not a folder")
        paths: list[pathlib.Path] = []
        for number, url in zip(_QUADRANTS, info.upscaled_urls, strict=False):
            path = base / f"{self.id}-{number}{_suffix(url)}"
            paths.append((await self._fetch(info, url, path, max_bytes)).path)
        return paths

    async def _fetch(
        self, info: ImageInfo, url: str, path: pathlib.Path, max_bytes: int
    ) -> Download:
        expires = info.expires_at
        if expires is not None and datetime.now(UTC) >= expires:
            # Akool's own rule, checked against the wall clock because create_time is one.
            raise ResultExpired(
                f"the result of job {self.id} expired at {expires:%Y-%m-%d %H:%M} UTC: Akool "
                "keeps results for seven days",
                url=url,
            )
        return await self.session.download_url(url, path, max_bytes=max_bytes)

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


def _suffix(url: str) -> str:
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower()
    return suffix if suffix in _IMAGE_SUFFIXES else ".png"


async def _destination(dest: str | os.PathLike[str], job_id: str, url: str) -> pathlib.Path:
    path = pathlib.Path(dest)
    # The stat goes through anyio's worker thread, as all file-system access in async code does.
    if str(dest).endswith(("/", os.sep)) or await anyio.Path(path).is_dir():
        return path / f"{job_id}{_suffix(url)}"
    return path
