"""Several processes of one app, one Akool account: shared callbacks and request budget.

`RedisCoordinator` needs the ``redis`` extra (``python -m pip install '.[redis]'`` from a
checkout), which brings `coredis`, an asyncio and trio Redis client. See the how-to "Running
several workers".
"""

from ._redis import RedisCoordinator

__all__ = ["RedisCoordinator"]
