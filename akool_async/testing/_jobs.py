"""An emulated job: its timeline is fixed at creation, so its state is a function of the clock."""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs

from akool_async.testing._akool import BUTTONS, CREDIT_PER_JOB, ImageStatus, button_quadrant

__all__ = ["EmulatedJob", "JobKind"]


class JobKind(enum.Enum):
    """What a job renders."""

    GRID = "grid"
    """A prompt job: a 2x2 grid."""
    UPSCALE = "upscale"
    """A U1..U4 child: one quadrant at a larger size."""
    VARIATION = "variation"
    """A V1..V4 child: a new grid based on one quadrant."""


View = Literal["prompt_create", "button_create", "info"]
"""Which documented answer a job is described in."""


@attrs.define(kw_only=True)
class EmulatedJob:
    """One job the emulator created, with its whole timeline.

    Attributes:
        id: The job's ``_id``.
        kind: Grid, upscale or variation.
        prompt: The prompt (a child's is its parent's).
        scale: The aspect ratio, such as ``"16:9"`` (a child's is its parent's).
        seed: The seed its images are drawn from.
        created_at: Emulator clock time of the create.
        started_at: When it leaves the queue (status 1 -> 2).
        finished_at: When it reaches status 3 or 4.
        complete_at: When its result is complete: for a grid, when the quadrants appear.
        fails: Whether it ends in status 4.
        parent_id: A child's grid.
        button: A child's button.
        message_id: A child's ``op_buttonMessageId``.
        source_image: An image-to-image job's source URL.
        webhook_url: Where status changes are delivered, if anywhere.
        origin: ``scheme://host`` the create came to; image URLs are built on it.
        create_time_ms: The ``create_time`` reported, in epoch milliseconds.
        deduction_credit: The credits its create was charged.
        used_buttons: Buttons pressed on this grid, in order.
    """

    id: str
    kind: JobKind
    prompt: str
    scale: str
    seed: int
    created_at: float
    started_at: float
    finished_at: float
    complete_at: float
    fails: bool
    parent_id: str | None = None
    button: str | None = None
    message_id: str | None = None
    source_image: str | None = None
    webhook_url: str | None = None
    origin: str = ""
    create_time_ms: int = 0
    deduction_credit: float = CREDIT_PER_JOB
    used_buttons: list[str] = attrs.Factory(list[str])

    @property
    def is_grid(self) -> bool:
        """Prompt jobs and variations render grids; upscales render one image."""
        return self.kind is not JobKind.UPSCALE

    @property
    def quadrant(self) -> int | None:
        """The quadrant a child was made from."""
        return button_quadrant(self.button) if self.button else None

    def status_at(self, now: float) -> ImageStatus:
        """Akool's ``image_status`` at emulator time ``now``: an int from 1 to 4."""
        if now < self.started_at:
            return ImageStatus.QUEUEING
        if now < self.finished_at:
            return ImageStatus.PROCESSING
        return ImageStatus.FAILED if self.fails else ImageStatus.COMPLETED

    def image_url(self, name: str) -> str:
        """The URL the emulator serves one of this job's images at."""
        return f"{self.origin}/_emulator/images/{self.id}/{name}.png"

    def result_url(self) -> str:
        """The ``image`` URL of a completed job: the composite, or the upscale."""
        return self.image_url("grid" if self.is_grid else "upscale")

    def describe(self, now: float, *, uid: int, view: View = "info") -> dict[str, Any]:
        """The ``data`` object Akool would send for this job at time ``now``.

        Field sets and types follow the documented samples of each answer: the createbyprompt
        answer (with ``uid``, ``type`` 4, ``from`` and the prompts), the createbybutton answer
        (parent, button and ``from``, no ``uid``), and the infobymodelid answer (``uid``,
        ``type`` 3, ``image`` once completed; a child's parent and button too).
        """
        status = self.status_at(now)
        data: dict[str, Any] = {
            "faceswap_quality": 2,
            "deduction_credit": self.deduction_credit,
            "buttons": [],
            "used_buttons": list(self.used_buttons),
            "upscaled_urls": [],
            "_id": self.id,
            "create_time": self.create_time_ms,
        }
        if view != "button_create":
            data["uid"] = uid
            data["type"] = 4 if view == "prompt_create" else 3
        if view != "info":
            data["from"] = 1
        if view == "prompt_create":
            data["origin_prompt"] = self.prompt
            data["prompt"] = " ".join(self.prompt.split())
            if self.source_image is not None:
                data["source_image"] = self.source_image
        if self.kind is not JobKind.GRID:
            data["image_content_model_id"] = self.parent_id
            data["op_button"] = self.button
            if view == "button_create":
                data["op_buttonMessageId"] = self.message_id
        data["image_status"] = int(status)
        if status is ImageStatus.COMPLETED:
            data["image"] = self.result_url()
            # Akool's quirk: status 3 can come before the quadrants; buttons come with them.
            if self.is_grid and now >= self.complete_at:
                data["upscaled_urls"] = [self.image_url(str(n)) for n in range(1, 5)]
                if self.kind is JobKind.GRID:
                    data["buttons"] = [b for b in BUTTONS if b not in self.used_buttons]
        return data

    def webhook_events(self) -> list[tuple[float, dict[str, Any]]]:
        """The status changes Akool reports by webhook: processing, then completed or failed."""
        final = ImageStatus.FAILED if self.fails else ImageStatus.COMPLETED
        started = {"_id": self.id, "status": int(ImageStatus.PROCESSING), "type": "image"}
        finished: dict[str, Any] = {"_id": self.id, "status": int(final), "type": "image"}
        if not self.fails:
            finished["url"] = self.result_url()
        return [(self.started_at, started), (self.finished_at, finished)]
