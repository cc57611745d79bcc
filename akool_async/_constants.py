"""The library's tuning in one place: defaults, limits and intervals a maintainer may revisit.

Facts of Akool's wire (paths, methods, which calls are paid) are in `_endpoints`; the planner's
and the pace's own parameters stay beside the arithmetic they tune (`_polling`, `_pace`),
where each is explained with the figures it was chosen from.
"""

from __future__ import annotations

from typing import Final

import httpx

__all__ = [
    "CALLBACK_BODY_DEADLINE",
    "CREATORS_PER_REQUEST_SLOT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "DEFAULT_MAX_JOBS_IN_FLIGHT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TOLERANCE",
    "DOWNLOAD_DRAIN_LIMIT",
    "ENDED_JOBS_KEPT",
    "ENDED_JOBS_KEPT_FOR",
    "MAX_ANSWER_BYTES",
    "MAX_ANSWER_DEPTH",
    "MAX_BODY_BYTES",
    "MIN_SLEEP",
    "POOL_LIMITS",
    "REMEMBERED_CALLBACKS",
    "RERANK_EVERY",
    "UNWATCHED_JOBS_KEPT_FOR",
    "WEBHOOK_PATH",
]

# -- requests -----------------------------------------------------------------------------------

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
"""Per-request timeouts of a session's own client: 10 s to connect, 30 s for the rest."""
POOL_LIMITS: Final = httpx.Limits(max_connections=20, max_keepalive_connections=20)
"""A session's own connection pool. Bounded: the pace, not the pool queue, decides how many
requests wait (httpx's pool costs ~10 ms of CPU per request with 100 or more waiting in it)."""
DEFAULT_MAX_CONCURRENT_REQUESTS: Final = 16
"""Requests in flight at once, creates and status reads together."""
MAX_ANSWER_BYTES: Final = 1024 * 1024
"""The largest API answer read, counted both as sent (compressed) and once decompressed: 1 MiB,
some 500 times Akool's largest answer (a job's info, ~2 KB with a long prompt). A larger one is
an `InvalidResponse` and is not read further."""
MAX_ANSWER_DEPTH: Final = 32
"""The deepest nesting of arrays and objects accepted in an API answer (Akool's go 3 deep)."""

# -- jobs ---------------------------------------------------------------------------------------

DEFAULT_MAX_JOBS_IN_FLIGHT: Final = 100
"""`AkoolSession.generate_many`'s default concurrency: jobs created and not yet finished."""
CREATORS_PER_REQUEST_SLOT: Final = 4
"""`generate_many` runs this many creating tasks per request slot (a few wait on the pace
while others send), never more than the jobs it may keep in flight."""
RERANK_EVERY: Final = 1.0
"""Seconds between re-rankings of jobs due for a look while they wait for a turn."""
MIN_SLEEP: Final = 1e-6
"""The shortest sleep: a virtual clock must be able to move on."""
ENDED_JOBS_KEPT: Final = 1000
"""Ended jobs a session keeps in memory after nobody waits on them, at most: a wait soon after
the end (say on a handle `as_completed` yielded) costs no request. Older ones are let go of, and
a later wait reads the job once: a long-lived session's memory stays flat."""
ENDED_JOBS_KEPT_FOR: Final = 60.0
"""Seconds an ended job is kept after nobody waits on it."""
UNWATCHED_JOBS_KEPT_FOR: Final = 86_400.0
"""Seconds an unfinished job nobody waits on is kept (its age tells a later wait when to look)."""

# -- results ------------------------------------------------------------------------------------

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
"""The largest download accepted by default: 64 MiB, several times a 4K PNG."""
DOWNLOAD_DRAIN_LIMIT: Final = 1 << 20
"""Bytes read after a failed download while waiting for httpx to reach a checkpoint."""

# -- webhooks -----------------------------------------------------------------------------------

WEBHOOK_PATH: Final = "/akool/webhook"
"""Where a session listening for callbacks (``webhook_listen``) receives them."""
DEFAULT_TOLERANCE: Final = 300.0
"""Seconds a callback's timestamp may differ from this machine's clock (five minutes)."""
MAX_BODY_BYTES: Final = 64 * 1024
"""The largest callback accepted: Akool's are a few hundred bytes."""
CALLBACK_BODY_DEADLINE: Final = 10.0
"""Seconds a callback's body may take to arrive whole: a sender that trickles it (slowloris)
is refused, and its connection closed, instead of holding a socket for as long as it likes."""

REMEMBERED_CALLBACKS: Final = 100_000
"""(job, status) pairs a receiver keeps to recognise repeated deliveries."""
