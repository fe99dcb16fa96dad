"""The daemon's poll loop and the shutdown both commands share.

SIGTERM or SIGINT stops the taking of new work; calls already being archived get
``grace`` to finish, then are cancelled (a write in progress completes first: every store write
is atomic, so nothing is left half-written). A second signal cancels at once.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import anyio
import structlog

from archiver.errors import TransientError, collapse
from archiver.pipeline import Archiver, RunReport

log = structlog.get_logger("archiver.daemon")
T = TypeVar("T")


async def supervised(archiver: Archiver, work: Callable[[], Awaitable[T]], *, grace: timedelta) -> T | None:
    """Run *work*; on a signal stop *archiver* gracefully. None when cancelled by shutdown."""
    result: T | None = None
    try:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        if not archiver.stopping:
                            log.info(
                                "shutdown.requested",
                                signal=signal.Signals(signum).name,
                                grace_seconds=grace.total_seconds(),
                            )
                            archiver.stop()
                            tg.start_soon(_cancel_after, scope, grace.total_seconds())
                        else:
                            log.warning("shutdown.forced", signal=signal.Signals(signum).name)
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


async def poll_forever(
    archiver: Archiver,
    *,
    interval: timedelta,
    lookback: timedelta,
    settle: timedelta,
    on_poll: Callable[[RunReport | None, Exception | None], None] | None = None,
) -> None:
    """Poll every *interval* (drift-corrected: a slow poll shortens the next wait) until stopped.

    A poll that fails for a reason that may pass is logged and tried again next tick;
    a FatalError ends the loop.
    """
    period = interval.total_seconds()
    next_tick = anyio.current_time()
    while not archiver.stopping:
        try:
            report = await archiver.poll_once(lookback=lookback, settle=settle)
        except TransientError as exc:
            log.error("poll.failed", error=str(exc))
            if on_poll:
                on_poll(None, exc)
        else:
            log.info(
                "poll.completed",
                **report.outcomes,
                parked=len(report.parked),
                failed=len(report.failed),
                skipped=report.skipped,
                rows=report.rows,
            )
            if on_poll:
                on_poll(report, None)
        next_tick += period
        now = anyio.current_time()
        next_tick = max(next_tick, now)
        with anyio.move_on_after(next_tick - now):
            await archiver.wait_stopped()
