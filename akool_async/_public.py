"""Make exported classes name the module users import them from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["report_public_module"]


def report_public_module(
    namespace: Mapping[str, object], names: Iterable[str], module: str
) -> None:
    """Set ``__module__`` of each exported class defined in ``module``'s private submodules.

    Tracebacks, reprs and docs then say ``akool_async.JobFailed``, not
    ``akool_async._errors.JobFailed``.
    """
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type) and obj.__module__.startswith(f"{module}._"):
            obj.__module__ = module
