"""What the emulator has done, in one snapshot: creates, presses, requests and credits.

`EmulatorAccounting` is built from the emulator's own records (its jobs and its requests) when
asked for, so it never disagrees with them. It is what ``AkoolEmulator.accounting()`` returns,
what ``GET /_emulator/accounting`` answers as JSON for clients in any language, and what the
served emulator prints when it stops.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from akool_async.testing._http import RecordedRequest
from akool_async.testing._jobs import EmulatedJob

__all__ = ["EmulatorAccounting"]


@attrs.frozen(kw_only=True)
class EmulatorAccounting:
    """A snapshot of what the emulator has committed, answered and charged.

    Attributes:
        creates: Prompt -> the ids of the prompt jobs created for it, oldest first. A prompt
            whose tuple holds two ids was created twice (and charged twice).
        presses: ``(parent id, button)`` -> the ids of the jobs that press created.
        requests: Endpoint name (``createbyprompt``, ``createbybutton``, ``infobymodelid``,
            ``quota``, ``getToken``, ``image`` or ``unknown``) -> HTTP status -> how many.
            Requests for this accounting are not counted.
        codes: Endpoint name -> Akool business code answered (1000 for success) -> how many.
        credits_per_job: Job id -> the credits its create was charged, in creation order.
        credits_charged: The credits charged in all.
        balance: The account's balance now, as ``quota/info`` reports it.
    """

    creates: Mapping[str, tuple[str, ...]]
    presses: Mapping[tuple[str, str], tuple[str, ...]]
    requests: Mapping[str, Mapping[int, int]]
    codes: Mapping[str, Mapping[int, int]]
    credits_per_job: Mapping[str, float]
    credits_charged: float
    balance: float

    @classmethod
    def of(
        cls,
        jobs: Iterable[EmulatedJob],
        requests: Iterable[RecordedRequest],
        *,
        credits_charged: float,
        balance: float,
    ) -> EmulatorAccounting:
        """The accounting of ``jobs`` (in creation order) and ``requests``."""
        creates: dict[str, list[str]] = collections.defaultdict(list)
        presses: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        credits_per_job: dict[str, float] = {}
        for job in jobs:
            if job.parent_id is not None and job.button is not None:
                presses[job.parent_id, job.button].append(job.id)
            else:
                creates[job.prompt].append(job.id)
            credits_per_job[job.id] = job.deduction_credit
        statuses: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        codes: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        for request in requests:
            statuses[request.endpoint][request.status_code] += 1
            if request.code is not None:
                codes[request.endpoint][request.code] += 1
        return cls(
            creates={prompt: tuple(ids) for prompt, ids in creates.items()},
            presses={press: tuple(ids) for press, ids in presses.items()},
            requests={endpoint: dict(counts) for endpoint, counts in statuses.items()},
            codes={endpoint: dict(counts) for endpoint, counts in codes.items()},
            credits_per_job=credits_per_job,
            credits_charged=credits_charged,
            balance=balance,
        )

    @property
    def create_count(self) -> int:
        """Prompt jobs created in all."""
        return sum(len(ids) for ids in self.creates.values())

    @property
    def press_count(self) -> int:
        """Button presses committed in all."""
        return sum(len(ids) for ids in self.presses.values())

    @property
    def request_count(self) -> int:
        """Requests answered in all."""
        return sum(sum(counts.values()) for counts in self.requests.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``GET /_emulator/accounting`` answers (see docs/how-to/testing.md)."""
        per_parent: dict[str, dict[str, Any]] = {}
        for (parent_id, button), ids in self.presses.items():
            per_parent.setdefault(parent_id, {})[button] = {"count": len(ids), "job_ids": list(ids)}
        return {
            "creates": {
                "total": self.create_count,
                "per_prompt": {
                    prompt: {"count": len(ids), "job_ids": list(ids)}
                    for prompt, ids in self.creates.items()
                },
            },
            "presses": {"total": self.press_count, "per_parent": per_parent},
            "requests": {
                "total": self.request_count,
                "per_endpoint": {
                    endpoint: {
                        "count": sum(counts.values()),
                        "per_status": _keyed_by_text(counts),
                        "per_code": _keyed_by_text(self.codes.get(endpoint, {})),
                    }
                    for endpoint, counts in self.requests.items()
                },
            },
            "credits": {
                "charged": _plain(self.credits_charged),
                "balance": _plain(self.balance),
                "per_job": {
                    job_id: _plain(amount) for job_id, amount in self.credits_per_job.items()
                },
            },
        }

    def summary(self) -> list[str]:
        """A few lines for a person: creates, presses, requests and credits."""
        repeated = sum(1 for ids in self.creates.values() if len(ids) > 1)
        grids = len({parent_id for parent_id, _ in self.presses})
        endpoints = ", ".join(
            f"{endpoint} {sum(counts.values())}"
            for endpoint, counts in sorted(self.requests.items())
        )
        creates = f"distinct prompts {len(self.creates)}, created more than once {repeated}"
        return [
            f"creates: {self.create_count} ({creates})",
            f"button presses: {self.press_count} (on {grids} grids)",
            f"requests: {self.request_count}" + (f" ({endpoints})" if endpoints else ""),
            f"credits charged: {self.credits_charged:g} (balance now {self.balance:g})",
        ]


def _keyed_by_text(counts: Mapping[int, int]) -> dict[str, int]:
    """JSON object keys are text: ``{200: 3}`` becomes ``{"200": 3}``, in ascending order."""
    return {str(key): counts[key] for key in sorted(counts)}


def _plain(amount: float) -> float:
    """A whole amount as an int, so JSON says ``8``, not ``8.0``."""
    return int(amount) if float(amount).is_integer() else amount
