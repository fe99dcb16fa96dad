"""Liveness and readiness: is the poll loop making progress, and did a poll succeed lately.

The watchdog (systemd's ``WATCHDOG=1``), ``/healthz`` and ``/readyz`` read :class:`Health`; the
archiving path keeps it alive through the observer hooks (every row read, every call finished).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from archiver.archive.events import ArchiveEvents


class Health(ArchiveEvents):
    """Liveness (the loop makes progress) and readiness (a poll succeeded recently)."""

    def __init__(self, *, stall_after: float, ready_within: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.stall_after = stall_after
        self.ready_within = ready_within
        self._beat = clock()
        self._last_success: float | None = None
        self.last_error: str | None = None

    def beat(self) -> None:
        self._beat = self._clock()

    def poll_succeeded(self) -> None:
        self._last_success = self._beat = self._clock()
        self.last_error = None

    def poll_failed(self, error: str) -> None:
        self._beat = self._clock()
        self.last_error = error

    def alive(self) -> bool:
        return self._clock() - self._beat < self.stall_after

    def ready(self) -> bool:
        return self._last_success is not None and self._clock() - self._last_success < self.ready_within

    def row_read(self) -> None:
        self.beat()

    def call_finished(self) -> None:
        self.beat()
