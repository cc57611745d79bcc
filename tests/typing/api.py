"""The public surface as users write it, checked by mypy and pyright in strict mode.

Never executed and never collected by pytest (the name is not ``test_*.py``): it only has to
type-check. Every call sits inside ``_usage`` so that nothing runs even if it were imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, assert_type

import httpx

import akool_async as ak


# Never called, on purpose: it exists to be type-checked.
async def _usage() -> None:  # pyright: ignore[reportUnusedFunction]
    # -- building a session: every way to authenticate, every option -------------------------
    ak.AkoolSession()  # credentials from AKOOL_* variables
    ak.AkoolSession(api_key="key")
    ak.AkoolSession(token="token")
    ak.AkoolSession(client_id="id", client_secret="secret")
    ak.AkoolSession(api_key="key", client_id="id", client_secret="secret")
    ak.AkoolSession(api_key="key", base_url="https://openapi.akool.com")
    ak.AkoolSession(api_key="key", base_url=httpx.URL(ak.DEFAULT_BASE_URL))
    ak.AkoolSession(api_key="key", timeout=10)
    ak.AkoolSession(api_key="key", timeout=2.5)
    ak.AkoolSession(api_key="key", timeout=httpx.Timeout(30.0, connect=5.0))
    ak.AkoolSession(api_key="key", timeout=None)
    ak.AkoolSession(api_key="key", timeout=ak.NOT_GIVEN)
    ak.AkoolSession(api_key="key", retry=ak.RetryPolicy())
    ak.AkoolSession(api_key="key", retry=None)

    def on_event(event: ak.JobEvent) -> None:
        assert_type(event.kind, ak.EventKind)
        assert_type(event.info, ak.ImageInfo | None)  # None: a read_failed job never read
        assert_type(event.error, ak.AkoolError | None)

    ak.AkoolSession(api_key="key", on_event=on_event)

    policy = ak.RetryPolicy(
        attempts=3, timeout=60, wait_initial=0.25, wait_max=5.0, max_retry_after=30, jitter=False
    )
    assert_type(policy.attempts, int)
    assert_type(policy.timeout, float)
    assert_type(policy.jitter, bool)
    assert_type(policy.backoff(1), float)
    assert_type(policy.backoff(2, retry_after=1.5), float)

    async with (
        httpx.AsyncClient() as client,
        ak.AkoolSession(api_key="key", http_client=client) as borrowed,
    ):
        assert_type(borrowed, ak.AkoolSession)

    ak.AkoolSession(api_key="key", http2=True)  # needs the http2 extra

    session = ak.AkoolSession(api_key="key", retry=policy)
    assert_type(session.base_url, httpx.URL)
    assert_type(session.retry, ak.RetryPolicy)
    stats = session.stats
    assert_type(stats, ak.SessionStats)
    assert_type(stats.status_requests, int)
    assert_type(stats.jobs_tracked, int)
    assert_type(stats.webhook_jobs, int)
    assert_type(stats.pushes, int)
    assert_type(stats.missed_pushes, int)
    assert_type(stats.push_healthy, bool)
    assert_type(stats.jobs_evicted, int)
    assert_type(stats.failed_reads, int)
    assert_type(stats.jobs_unreadable, int)
    assert_type(stats.orphaned_creates, int)
    assert_type(session.orphaned_creates, tuple[ak.ImageJob | ak.SubmissionUnknown, ...])
    assert_type(session.listening_url, str | None)
    assert_type(session.job("64dd82eef0b6684651e90131").uses_session_webhook, bool)

    async with session:
        # -- the wire calls, one request each ---------------------------------------------
        created = await session.create_by_prompt("a red fox in snow")
        assert_type(created, ak.ImageInfo)
        assert_type(
            await session.create_by_prompt(
                "a red fox in snow",
                scale="16:9",
                source_image="https://example.com/fox.png",
                webhook_url="https://example.com/hook",
            ),
            ak.ImageInfo,
        )
        assert_type(
            await session.create_by_prompt("a fox", scale=ak.Scale.RATIO_9_16), ak.ImageInfo
        )
        assert_type(await session.create_by_button(created.id, "U1"), ak.ImageInfo)
        assert_type(
            await session.create_by_button(
                created.id, ak.Button.V3, webhook_url="https://example.com/hook"
            ),
            ak.ImageInfo,
        )
        assert_type(await session.get_image_info(created.id), ak.ImageInfo)
        assert_type(await session.get_credit(), float)

        # -- job handles ------------------------------------------------------------------
        job = await session.generate("a red fox in snow", scale="16:9")
        assert_type(job, ak.ImageJob)
        assert_type(
            await session.generate(
                "a fox",
                scale=ak.Scale.RATIO_1_1,
                source_image="https://example.com/fox.png",
                webhook_url="https://example.com/hook",
            ),
            ak.ImageJob,
        )
        assert_type(job.id, str)
        assert_type(job.session, ak.AkoolSession)
        assert_type(job.info, ak.ImageInfo | None)
        assert_type(await job.refresh(), ak.ImageInfo)
        resumed = session.job("64dd82eef0b6684651e90131")
        assert_type(resumed, ak.ImageJob)
        assert_type(resumed == job, bool)
        assert_type({job, resumed}, set[ak.ImageJob])

    # -- what a job looks like ----------------------------------------------------------------
    info = ak.ImageInfo.from_wire({"_id": "64dd82eef0b6684651e90131", "image_status": 1})
    assert_type(info, ak.ImageInfo)
    assert_type(info.id, str)
    assert_type(info.status, ak.ImageStatus)
    assert_type(info.image, str | None)
    assert_type(info.upscaled_urls, tuple[str, ...])
    assert_type(info.buttons, tuple[str, ...])
    assert_type(info.used_buttons, tuple[str, ...])
    assert_type(info.create_time, datetime | None)
    assert_type(info.expires_at, datetime | None)
    assert_type(info.deduction_credit, float | None)
    assert_type(info.parent_id, str | None)
    assert_type(info.op_button, str | None)
    assert_type(info.is_upscale, bool)
    assert_type(info.is_result_ready, bool)
    assert_type(info.extra, Mapping[str, Any])
    assert_type(info.to_wire(), dict[str, Any])
    assert_type(ak.RESULT_LIFETIME, timedelta)

    assert_type(ak.ImageStatus.COMPLETED.is_terminal, bool)
    assert_type(ak.ImageStatus(3), ak.ImageStatus)
    assert_type(ak.Scale("16:9"), ak.Scale)
    assert_type(ak.Scale.RATIO_16_9.ratio, tuple[int, int])
    assert_type(ak.Button("U2"), ak.Button)
    assert_type(ak.Button.U2.is_upscale, bool)
    assert_type(ak.Button.V4.quadrant, int)

    # -- credentials -----------------------------------------------------------------------------
    credentials = ak.Credentials.resolve(
        api_key="key", token=None, client_id=None, client_secret=None, environ={}
    )
    assert_type(credentials, ak.Credentials)
    assert_type(credentials.mode, ak.AuthMode)
    assert_type(credentials.api_key, ak.Secret | None)
    assert_type(credentials.client_id, str | None)
    assert_type(credentials.has_client_credentials, bool)
    assert_type(ak.Secret("value").reveal(), str)
    assert_type(ak.AuthMode("client_credentials"), ak.AuthMode)

    # -- the error tree ----------------------------------------------------------------------------
    try:
        await session.create_by_prompt("a red fox in snow")
    except ak.SubmissionUnknown as exc:
        assert_type(exc.endpoint, str)
        assert_type(exc.payload, dict[str, Any])
        assert_type(exc.reason, str)
    except ak.RateLimited as exc:
        assert_type(exc.code, int)
        assert_type(exc.retry_after, float | None)
    except ak.APIError as exc:
        assert_type(exc.code, int)
        assert_type(exc.msg, str)
        assert_type(exc.endpoint, str | None)
    except ak.TooManyRequests as exc:
        assert_type(exc.status_code, int)
        assert_type(exc.retry_after, float | None)
    except ak.HTTPStatusError as exc:
        assert_type(exc.status_code, int)
    except ak.TransportError as exc:
        assert_type(exc.endpoint, str | None)
    except ak.JobFailed as exc:
        assert_type(exc.info, ak.ImageInfo)
        assert_type(exc.job_id, str)
    except ak.WaitTimeout as exc:
        assert_type(exc.job_id, str)
        assert_type(exc.timeout, float)
        assert_type(exc.last_error, ak.AkoolError | None)
    except ak.InvalidInput as exc:
        assert_type(exc, ak.InvalidInput)
    except ak.SessionClosed as exc:
        assert_type(exc, ak.SessionClosed)
    except ak.SessionStateError as exc:  # also a RuntimeError
        assert_type(exc, ak.SessionStateError)
    except ak.AkoolError as exc:
        assert_type(exc, ak.AkoolError)

    # The tree fits the standard hierarchy: timeouts are TimeoutError, bad input a ValueError.
    timeouts: list[TimeoutError] = [
        ak.WaitTimeout("64dd82eef0b6684651e90131", 600),
        ak.RequestTimeout("timed out", endpoint="/api/open/v3/content/image/infobymodelid"),
    ]
    assert_type(timeouts, list[TimeoutError])
    bad_input: list[ValueError] = [ak.InvalidInput("bad scale"), ak.MissingCredentials("none")]
    assert_type(bad_input, list[ValueError])
    misuse: list[RuntimeError] = [ak.SessionStateError("not open"), ak.SessionClosed("closed")]
    assert_type(misuse, list[RuntimeError])
    api_errors: list[ak.APIError] = [
        ak.APIError(4242, "a code Akool has not documented"),
        ak.AccountBanned(1200, "banned"),
        ak.AuthenticationError(1101, "invalid token"),
        ak.ContentNotFound(1008, "content not exist", endpoint="/x"),
        ak.GenerationError(1108, "try again later"),
        ak.InsufficientCredit(1006, "not enough credit"),
        ak.OperationNotAllowed(1010, "button used"),
        ak.ParameterError(1003, "parameter error"),
        ak.PaymentRequired(1103, "not paid"),
        ak.PermissionDenied(1009, "no permission"),
        ak.RateLimited(1005, "too frequent"),
    ]
    assert_type(api_errors, list[ak.APIError])
    transport_errors: list[ak.TransportError] = [
        ak.ConnectError("refused"),
        ak.RemoteProtocolError("reset", endpoint="/x"),
        ak.HTTPStatusError("HTTP 404", status_code=404),
        ak.TooManyRequests("HTTP 429", retry_after=2.0),
        ak.ServerError("HTTP 502", status_code=502, endpoint="/x"),
        ak.InvalidResponse("not JSON"),
    ]
    assert_type(transport_errors, list[ak.TransportError])
    unknown = ak.SubmissionUnknown(
        "/api/open/v3/content/image/createbyprompt", {"prompt": "fox"}, "timeout"
    )
    assert_type(unknown, ak.SubmissionUnknown)

    # -- odds and ends ----------------------------------------------------------------------------
    assert_type(ak.__version__, str)
    not_given: ak.NotGiven = ak.NOT_GIVEN
    assert_type(not_given, ak.NotGiven)
