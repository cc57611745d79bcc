"""The emulator's one error of its own: a configuration it cannot run with."""

from __future__ import annotations

__all__ = ["EmulatorConfigError"]


class EmulatorConfigError(ValueError):
    """The emulator or one of its settings was given a value it cannot use.

    Raised where the setting is built (`AkoolEmulator`, `Faults`, `EmulatorTimings`, `Duration`,
    `Pareto`, `Mixture`, `DeliveryPolicy`), never while the emulator answers requests; the
    message says what was given and what is allowed. A `ValueError`, and not one of the SDK's
    `akool_async.AkoolError`s: the emulator stands apart from the client it tests, and a mistake
    here is in the test's setup, not in a call to Akool.
    """
