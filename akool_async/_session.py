"""AkoolSession, which owns the HTTP client and the wire, and ImageJob, a handle on one job."""

from __future__ import annotations

import enum
import logging
import math
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final, Self, cast

import anyio
import httpx

from ._config import Credentials, resolve_base_url
from ._errors import InvalidInput
from ._models import Button, ImageInfo, Scale
from ._retry import RetryPolicy
from ._validate import check_button, check_image_id, check_prompt, check_scale, check_url
from ._wire import Wire

__all__ = ["NOT_GIVEN", "AkoolSession", "ImageJob", "NotGiven"]

logger = logging.getLogger("akool_async")

CREATE_BY_PROMPT: Final = "/api/open/v3/content/image/createbyprompt"
CREATE_BY_BUTTON: Final = "/api/open/v3/content/image/createbybutton"
IMAGE_INFO: Final = "/api/open/v3/content/image/infobymodelid"
CREDIT_INFO: Final = "/api/open/v3/faceswap/quota/info"

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
"""Per-request timeouts of a session's own client: 10 s to connect, 30 s for the rest."""

try:
    __version__ = version("akool-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"


class NotGiven(enum.Enum):
    """The type of `NOT_GIVEN`: "use the default", as distinct from ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _decode_info(data: Any) -> ImageInfo:
    return ImageInfo.from_wire(data)


def _decode_credit(data: Any) -> float:
    credit = cast("dict[str, Any]", data).get("credit") if isinstance(data, dict) else None
    if isinstance(credit, bool) or not isinstance(credit, int | float) or not math.isfinite(credit):
        raise TypeError("quota/info answered without a finite numeric 'credit'")
    return credit


class AkoolSession:
    """A session with Akool's image API. Use it as ``async with AkoolSession(...) as session:``.

    Credentials come from the arguments or, when none is given, from ``AKOOL_API_KEY``,
    ``AKOOL_TOKEN``, or ``AKOOL_CLIENT_ID`` with ``AKOOL_CLIENT_SECRET``. An api key is sent as
    ``x-api-key``; a token as ``Authorization: Bearer``; client credentials fetch a token from
    getToken once, share it between all requests and renew it once when Akool answers 1101.

    Args:
        api_key: Akool API key (the dashboard's key, the same value as the client secret).
        token: A bearer token from getToken.
        client_id: Client id, for getToken (and, later, webhook verification).
        client_secret: Client secret, for getToken (and, later, webhook verification).
        base_url: The API root; default ``AKOOL_BASE_URL``, else ``https://openapi.akool.com``.
            A passed ``http_client``'s own ``base_url`` is used when this is not given.
        timeout: Per-request timeouts, in seconds or as an ``httpx.Timeout``; ``None`` for none.
            Not given: 10 s to connect and 30 s otherwise for the session's own client, the
            passed client's own setting for ``http_client``.
        retry: How transient failures are retried (`RetryPolicy`).
        http_client: An ``httpx.AsyncClient`` to use. The session then does not close it.

    Raises:
        MissingCredentials: No credentials given or found.
        InvalidInput: A credential or the base URL is malformed.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._credentials = Credentials.resolve(
            api_key=api_key, token=token, client_id=client_id, client_secret=client_secret
        )
        self._base_url = resolve_base_url(base_url, http_client=http_client)
        self._timeout: httpx.Timeout | None
        if isinstance(timeout, NotGiven):
            self._timeout = DEFAULT_TIMEOUT if http_client is None else None
            self._request_timeout_given = False
        else:
            self._timeout = httpx.Timeout(timeout) if timeout is not None else httpx.Timeout(None)
            self._request_timeout_given = True
        self._retry = retry if retry is not None else RetryPolicy()
        self._given_client = http_client
        self._client: httpx.AsyncClient | None = None
        self._wire: Wire | None = None
        self._state = _State.UNOPENED

    def __repr__(self) -> str:
        return (
            f"<AkoolSession {self._state.value} base_url={str(self._base_url)!r} "
            f"auth={self._credentials.mode.value!r}>"
        )

    @property
    def base_url(self) -> httpx.URL:
        """The API root requests go to."""
        return self._base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RuntimeError("this AkoolSession is closed and cannot be reopened; make a new one")
        if self._state is _State.OPEN:
            raise RuntimeError("this AkoolSession is already open")
        if self._given_client is None:
            client = httpx.AsyncClient(
                timeout=self._timeout,
                # A bounded pool: the engine, not the pool queue, decides how many requests wait.
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            )
            await client.__aenter__()
        else:
            client = self._given_client
        self._client = client
        self._wire = Wire(
            client,
            base_url=self._base_url,
            credentials=self._credentials,
            retry=self._retry,
            timeout=self._timeout if self._request_timeout_given else None,
            user_agent=f"akool-async/{__version__} httpx/{httpx.__version__}",
        )
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = _State.CLOSED
        client, self._client, self._wire = self._client, None, None
        if client is not None and self._given_client is None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def _require_wire(self) -> Wire:
        if self._wire is None:
            if self._state is _State.CLOSED:
                raise RuntimeError("this AkoolSession is closed; make a new one")
            raise RuntimeError(
                "this AkoolSession is not open: use `async with AkoolSession(...) as session:`"
            )
        return self._wire

    # -- the wire calls, one request each (plus retries) -----------------------------------

    async def create_by_prompt(
        self,
        prompt: str,
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        source_image: str | None = None,
        webhook_url: str | None = None,
    ) -> ImageInfo:
        """Create a text-to-image job, or image-to-image with ``source_image``. Costs credits.

        Args:
            prompt: What to draw.
            scale: One of the seven aspect ratios (`Scale` or its string).
            source_image: URL of an image to start from (image-to-image).
            webhook_url: URL Akool calls back on status changes.

        Returns:
            The new job as Akool first describes it (usually queueing).

        Raises:
            InvalidInput: A bad argument; nothing was sent.
            SubmissionUnknown: The create may or may not have reached Akool; it was not retried.
            APIError: Akool refused it (a subclass per business code).
            TransportError: It provably did not reach Akool, after retries.
        """
        body: dict[str, Any] = {"prompt": check_prompt(prompt), "scale": check_scale(scale).value}
        if source_image is not None:
            body["source_image"] = check_url("source_image", source_image)
        if webhook_url is not None:
            body["webhookUrl"] = check_url("webhook_url", webhook_url)
        wire = self._require_wire()
        return await wire.call(
            "POST", CREATE_BY_PROMPT, json_body=body, decode=_decode_info, paid=True
        )

    async def create_by_button(
        self,
        image_id: str,
        button: Button | str,
        *,
        webhook_url: str | None = None,
    ) -> ImageInfo:
        """Press a button (U1..U4 upscale, V1..V4 vary) on a finished grid. Costs credits.

        Args:
            image_id: The grid job's id.
            button: ``U1``..``U4`` or ``V1``..``V4``.
            webhook_url: URL Akool calls back on status changes.

        Returns:
            The new child job; its `parent_id` is ``image_id``.

        Raises:
            InvalidInput: A bad argument; nothing was sent.
            SubmissionUnknown: The create may or may not have reached Akool; it was not retried.
            APIError: Akool refused it, e.g. `OperationNotAllowed` for a used button.
            TransportError: It provably did not reach Akool, after retries.
        """
        body: dict[str, Any] = {
            "_id": check_image_id(image_id),
            "button": check_button(button).value,
        }
        if webhook_url is not None:
            body["webhookUrl"] = check_url("webhook_url", webhook_url)
        wire = self._require_wire()
        return await wire.call(
            "POST", CREATE_BY_BUTTON, json_body=body, decode=_decode_info, paid=True
        )

    async def get_image_info(self, image_id: str) -> ImageInfo:
        """Read a job's current state (``infobymodelid``). Free; retried on transient failures.

        Raises:
            InvalidInput: An empty or malformed id; nothing was sent.
            ContentNotFound: Akool knows no such job (code 1008).
            APIError: Another refusal.
            TransportError: The read failed after retries.
        """
        params = {"image_model_id": check_image_id(image_id)}
        wire = self._require_wire()
        return await wire.call("GET", IMAGE_INFO, params=params, decode=_decode_info)

    async def get_credit(self) -> float:
        """The account's credit balance (``quota/info``).

        Raises:
            APIError: Akool refused the request.
            TransportError: The read failed after retries.
        """
        wire = self._require_wire()
        return await wire.call("GET", CREDIT_INFO, decode=_decode_credit)

    # -- job handles -------------------------------------------------------------------------

    async def generate(
        self,
        prompt: str,
        *,
        scale: Scale | str = Scale.RATIO_1_1,
        source_image: str | None = None,
        webhook_url: str | None = None,
    ) -> ImageJob:
        """Create a prompt job and return a handle on it. Costs credits.

        Takes the arguments of `create_by_prompt` and raises what it raises.
        """
        info = await self.create_by_prompt(
            prompt, scale=scale, source_image=source_image, webhook_url=webhook_url
        )
        logger.info("created image job %s (%s)", info.id, info.status.name.lower())
        return ImageJob(self, info.id, info=info)

    def job(self, image_id: str) -> ImageJob:
        """A handle on an existing job, e.g. one created by an earlier run. Sends nothing.

        Raises:
            InvalidInput: An empty or malformed id.
        """
        return ImageJob(self, check_image_id(image_id))


class ImageJob:
    """A handle on one Akool image job. Made by `generate` or ``.job(id)``.

    Attributes:
        id: The job's id.
        session: The session the handle belongs to.
    """

    __slots__ = ("_info", "id", "session")

    def __init__(
        self, session: AkoolSession, image_id: str, *, info: ImageInfo | None = None
    ) -> None:
        if info is not None and info.id != image_id:
            raise InvalidInput(f"info is for job {info.id!r}, not {image_id!r}")
        self.session = session
        self.id = image_id
        self._info = info

    @property
    def info(self) -> ImageInfo | None:
        """The job as last seen by this session, or None if it has not been read yet."""
        return self._info

    async def refresh(self) -> ImageInfo:
        """Read the job's current state from Akool (one request) and remember it."""
        self._info = await self.session.get_image_info(self.id)
        return self._info

    def __repr__(self) -> str:
        status = self._info.status.name if self._info is not None else "UNKNOWN"
        return f"ImageJob(id={self.id!r}, status={status})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageJob):
            return NotImplemented
        return self.session is other.session and self.id == other.id

    def __hash__(self) -> int:
        return hash((id(self.session), self.id))
