"""Akool's API endpoints as the emulator answers them: getToken, the two creates, info, credit.

The business logic only: which requests Akool refuses and with which code, what a create charges
and commits, and the envelope each answer is. The accounting it keeps (jobs, credit, counters) is
the emulator's own public state; routing, faults and HTTP are the emulator's.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from akool_async.testing._akool import (
    BUTTONS,
    CREDIT_PER_JOB,
    DEFAULT_SCALE,
    SCALES,
    UPSCALE_BUTTONS,
    Code,
    button_quadrant,
)
from akool_async.testing._http import Answer, Incoming, as_object, success
from akool_async.testing._jobs import EmulatedJob, JobKind, View
from akool_async.testing._plan import FaultKind, draw, rng_for

if TYPE_CHECKING:
    from akool_async.testing._emulator import AkoolEmulator

__all__ = ["Endpoints"]


class Endpoints:
    """The answers of Akool's API endpoints, reading and writing ``emulator``'s accounting.

    It reads the emulator's settings (credentials, seed, timings, faults, ``uid``) as they are
    at each request, so a test that changes them between requests is obeyed at once.
    """

    def __init__(self, emulator: AkoolEmulator, client_secret: str) -> None:
        self._emulator = emulator
        self._client_secret = client_secret
        self._tokens: dict[str, float] = {}
        self._next_id = 0

    def dispatch(self, incoming: Incoming, fault: FaultKind | None) -> dict[str, Any]:
        """The endpoint's work and its envelope; a refusal is raised as `Answer`."""
        if incoming.endpoint == "getToken":
            return self._get_token(incoming.body, incoming.at)
        self._authenticate(incoming.headers, incoming.at)
        if fault == "generate_error":
            raise Answer(Code.GENERATE_ERROR)
        if incoming.endpoint == "createbyprompt":
            return self._create_by_prompt(incoming.body, incoming.origin, incoming.at)
        if incoming.endpoint == "createbybutton":
            return self._create_by_button(incoming.body, incoming.origin, incoming.at)
        if incoming.endpoint == "infobymodelid":
            return self._info(incoming.query, incoming.at)
        return success(data={"credit": self._emulator.credit})

    def _authenticate(self, headers: Mapping[str, str], at: float) -> None:
        authorization = headers.get("authorization")
        if authorization:
            # Akool: when both headers are present, Authorization wins and x-api-key is ignored.
            scheme, _, token = authorization.partition(" ")
            issued = self._tokens.get(token) if scheme.lower() == "bearer" else None
            ttl = self._emulator.faults.token_ttl
            if issued is None or (ttl is not None and at - issued >= ttl):
                raise Answer(Code.INVALID_AUTHORIZATION)
            return
        api_key = headers.get("x-api-key")
        if not api_key:
            raise Answer(Code.AUTHORIZATION_EMPTY)
        if api_key != self._emulator.api_key:
            raise Answer(Code.INVALID_AUTHORIZATION)

    def _get_token(self, request_body: Any, at: float) -> dict[str, Any]:
        body = as_object(request_body)
        if body is None or not body.get("clientId") or not body.get("clientSecret"):
            raise Answer(Code.PARAMETER_ERROR)
        if (
            body["clientId"] != self._emulator.client_id
            or body["clientSecret"] != self._client_secret
        ):
            raise Answer(Code.INVALID_AUTHORIZATION)
        token = "emu." + _random_text(self._emulator.seed, "token", len(self._tokens), k=40)
        self._tokens[token] = at
        return success(token=token)

    def _new_id(self) -> str:
        """24 hex digits, the shape of Akool's ``_id`` (a MongoDB ObjectId)."""
        self._next_id += 1
        seed = self._emulator.seed
        return hashlib.sha256(f"{seed}\x1fid".encode()).hexdigest()[:16] + f"{self._next_id:08x}"

    def _charge(self) -> float:
        """Take one create's price from the balance, or refuse (1006); the price taken."""
        emulator = self._emulator
        if emulator.credit < CREDIT_PER_JOB and not emulator.overdraft:
            raise Answer(Code.INSUFFICIENT_CREDIT)
        emulator.credit -= CREDIT_PER_JOB
        emulator.credits_used += CREDIT_PER_JOB
        return CREDIT_PER_JOB

    def _timeline(self, kind: JobKind, key: str, at: float) -> tuple[float, float, float, bool]:
        emulator = self._emulator
        rng = rng_for(emulator.seed, "timing", key)
        timings, time_scale = emulator.timings, emulator.time_scale
        queue, processing = {
            JobKind.GRID: (timings.grid_queue, timings.grid_processing),
            JobKind.UPSCALE: (timings.upscale_queue, timings.upscale_processing),
            JobKind.VARIATION: (timings.variation_queue, timings.variation_processing),
        }[kind]
        started = at + queue.sample(rng) * time_scale
        finished = started + processing.sample(rng) * time_scale
        lag = timings.quadrant_lag.sample(rng) * time_scale if kind is not JobKind.UPSCALE else 0.0
        fails = draw(emulator.seed, "fails", key) < emulator.faults.job_failure_rate
        return started, finished, finished + lag, fails

    def _create_by_prompt(self, request_body: Any, origin: str, at: float) -> dict[str, Any]:
        emulator = self._emulator
        body = as_object(request_body)
        if body is None:
            raise Answer(Code.PARAMETER_ERROR)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Answer(Code.PARAMETER_ERROR)
        scale = body.get("scale") or DEFAULT_SCALE
        source_image = _optional_url(body.get("source_image"))
        webhook_url = _optional_url(body.get("webhookUrl"))
        if not isinstance(scale, str) or scale not in SCALES:
            raise Answer(Code.PARAMETER_ERROR)
        charged = self._charge()
        emulator.creates_by_prompt[prompt] += 1
        key = f"prompt\x1f{prompt}\x1f{emulator.creates_by_prompt[prompt]}"
        started, finished, complete, fails = self._timeline(JobKind.GRID, key, at)
        marker = emulator.faults.fail_marker
        job = EmulatedJob(
            id=self._new_id(),
            kind=JobKind.GRID,
            prompt=prompt,
            scale=scale,
            seed=int(draw(emulator.seed, "image", key) * 2**31),
            created_at=at,
            started_at=started,
            finished_at=finished,
            complete_at=complete,
            fails=fails or bool(marker and marker in prompt),
            source_image=source_image,
            webhook_url=webhook_url,
            origin=origin,
            create_time_ms=emulator.wall_ms(),
            deduction_credit=charged,
        )
        return self._commit(job, at)

    def _create_by_button(self, request_body: Any, origin: str, at: float) -> dict[str, Any]:
        emulator = self._emulator
        body = as_object(request_body)
        if body is None:
            raise Answer(Code.PARAMETER_ERROR)
        parent_id, button = body.get("_id"), body.get("button")
        if not isinstance(parent_id, str) or not parent_id or button not in BUTTONS:
            raise Answer(Code.PARAMETER_ERROR)
        parent = emulator.jobs.get(parent_id)
        if parent is None:
            raise Answer(Code.NOT_FOUND)
        available = parent.describe(at, uid=emulator.uid)["buttons"]
        if button not in available:
            raise Answer(Code.CANNOT_OPERATE)
        webhook_url = _optional_url(body.get("webhookUrl"))
        charged = self._charge()
        parent.used_buttons.append(button)
        emulator.button_presses[parent_id, button] += 1
        kind = JobKind.UPSCALE if button in UPSCALE_BUTTONS else JobKind.VARIATION
        key = f"button\x1f{parent_id}\x1f{button}"
        started, finished, complete, fails = self._timeline(kind, key, at)
        job = EmulatedJob(
            id=self._new_id(),
            kind=kind,
            prompt=parent.prompt,
            scale=parent.scale,
            seed=parent.seed
            if kind is JobKind.UPSCALE
            else _variation_seed(parent.seed, button_quadrant(button)),
            created_at=at,
            started_at=started,
            finished_at=finished,
            complete_at=complete,
            fails=fails,
            parent_id=parent_id,
            button=button,
            message_id=_random_text(emulator.seed, "message", key, k=20),
            webhook_url=webhook_url,
            origin=origin,
            create_time_ms=emulator.wall_ms(),
            deduction_credit=charged,
        )
        return self._commit(job, at)

    def _commit(self, job: EmulatedJob, at: float) -> dict[str, Any]:
        emulator = self._emulator
        emulator.jobs[job.id] = job
        if job.webhook_url is not None:
            for due, event in job.webhook_events():
                emulator.webhooks.schedule(url=job.webhook_url, due=due, payload=event)
        view: View = "prompt_create" if job.kind is JobKind.GRID else "button_create"
        return success(data=job.describe(at, uid=emulator.uid, view=view))

    def _info(self, query: Mapping[str, str], at: float) -> dict[str, Any]:
        job_id = query.get("image_model_id")
        if not job_id:
            raise Answer(Code.PARAMETER_ERROR)
        job = self._emulator.jobs.get(job_id)
        if job is None:
            raise Answer(Code.NOT_FOUND)
        return success(data=job.describe(at, uid=self._emulator.uid))


def _random_text(*parts: object, k: int) -> str:
    """``k`` letters and digits drawn from ``parts`` (a token, a ``message_id``)."""
    return "".join(rng_for(*parts).choices(string.ascii_letters + string.digits, k=k))


def _variation_seed(seed: int, quadrant: int) -> int:
    from akool_async.testing._images import variation_seed  # noqa: PLC0415 - Pillow is optional

    return variation_seed(seed, quadrant)


def _optional_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise Answer(Code.PARAMETER_ERROR)
    return value
