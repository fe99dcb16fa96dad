"""Stopping on a signal: stop taking work, let calls in flight finish within a grace period.

SIGTERM or SIGINT stops the taking of new work; calls already being archived get ``grace`` to
finish, then are cancelled (a write in progress completes first: every store write is atomic,
so nothing is left half-written). A second signal cancels at once. ``run`` and ``backfill``
both run under :func:`supervised`.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol, TypeVar

import anyio
import structlog

from archiver.errors import collapse

log = structlog.get_logger("archiver.service")
T = TypeVar("T")
SHUTDOWN_GRACE = timedelta(seconds=30)


class Stoppable(Protocol):
    @property
    def stopping(self) -> bool: ...

    def stop(self) -> None: ...


async def supervised(
    workers: Stoppable | Sequence[Stoppable],
    work: Callable[[], Awaitable[T]],
    *,
    grace: timedelta,
    on_stop: Callable[[], None] | None = None,
) -> T | None:
    """Run *work*; on a signal stop *workers* gracefully. None when cancelled by shutdown."""
    archivers = list(workers) if isinstance(workers, Sequence) else [workers]
    result: T | None = None
    try:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if not archivers[0].stopping:
                            log.info("shutdown.requested", signal=name, grace_seconds=grace.total_seconds())
                            for each in archivers:
                                each.stop()
                            if on_stop:
                                on_stop()
                            tg.start_soon(_cancel_after, scope, grace.total_seconds())
                        else:
                            log.warning("shutdown.forced", signal=name)
                            scope.cancel()

            tg.start_soon(watch)
            with scope:
                result = await work()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise collapse(group) from None
    return result


async def _cancel_after(scope: anyio.CancelScope, seconds: float) -> None:
    await anyio.sleep(seconds)
    if not scope.cancel_called:
        log.warning("shutdown.grace_expired", grace_seconds=seconds)
        scope.cancel()
