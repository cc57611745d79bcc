"""The emulator's statement of Akool's wire agrees with the client's, each written on its own.

The emulator imports nothing of the client, so a constant it got wrong cannot hide in both: here
the two statements meet, and any difference is a bug in one of them to be settled against
Akool's documentation.
"""

from __future__ import annotations

from datetime import timedelta

import akool_async as ak
from akool_async.testing import _akool as akool


def test_scales_agree() -> None:
    """The same seven scales, in the same order, with the same width and height parts."""
    assert [(scale.value, scale.ratio) for scale in ak.Scale] == list(akool.SCALES.items())


def test_buttons_agree() -> None:
    """U1..U4 upscale and V1..V4 vary, in Akool's order, acting on the same quadrants."""
    assert [button.value for button in ak.Button] == list(akool.BUTTONS)
    assert [button.value for button in ak.Button if button.is_upscale] == list(
        akool.UPSCALE_BUTTONS
    )
    assert [button.quadrant for button in ak.Button] == [
        akool.button_quadrant(button) for button in akool.BUTTONS
    ]


def test_statuses_agree() -> None:
    """image_status 1 queueing, 2 processing, 3 completed, 4 failed, on both sides."""
    assert [(status.name, status.value) for status in ak.ImageStatus] == [
        (status.name, status.value) for status in akool.ImageStatus
    ]


def test_result_lifetime_agrees() -> None:
    """Result URLs live seven days on both sides."""
    assert ak.RESULT_LIFETIME == timedelta(seconds=akool.RESULT_LIFETIME_SECONDS)


def test_every_code_the_emulator_answers_has_a_message() -> None:
    """Each business code the emulator may send carries Akool's wording."""
    assert set(akool.Code) == set(akool.MESSAGES)
