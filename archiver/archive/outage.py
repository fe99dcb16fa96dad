"""Waiting out a store outage together: one probe, every worker paused, nothing looped.

botocore retries each S3 request itself (standard mode: a few attempts within seconds). An
outage that outlasts that reaches the archive as :class:`StoreUnavailable`. The call's store step
does not then loop around its own request: it waits here. The first worker to arrive probes the
store with one cheap request (a HEAD of a key that need not exist), backing off, and the others
wait for it; once the store answers, each redoes its step. Past *patience* since the step first
failed, the step fails with StoreUnavailable: the daemon retries the call at its next poll, a
backfill names it and exits 1. Nothing is lost either way, as nothing was written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog

from archiver.errors import StoreUnavailable
from archiver.retry import RetryPolicy
from archiver.store import Store

T = TypeVar("T")
log = structlog.get_logger("archiver.archive")


class StoreOutage:
    """The gate every store step of one archive passes through (see the module's text).

    *policy* gives the patience (its ``timeout``) and the probe's backoff; *probe_key* is read
    with HEAD and need not exist.
    """

    def __init__(self, store: Store, probe_key: str, policy: RetryPolicy) -> None:
        self._store = store
        self._probe_key = probe_key
        self._policy = policy
        self._lock = anyio.Lock()
        self._answered_at = float("-inf")  # when the store last answered a probe (monotonic)

    async def run(self, step: Callable[[], Awaitable[T]]) -> T:
        """``await step()``; through an outage, once more each time the store answers again."""
        patience = self._policy.timeout if self._policy.timeout is not None else float("inf")
        deadline: float | None = None
        while True:
            failed_at = time.monotonic()
            try:
                return await step()
            except StoreUnavailable as exc:
                deadline = deadline if deadline is not None else failed_at + patience
                if time.monotonic() >= deadline:
                    raise
                await self._until_answered(failed_at, deadline, exc)

    async def _until_answered(self, failed_at: float, deadline: float, cause: StoreUnavailable) -> None:
        async with self._lock:  # one worker probes; the others wait here for its verdict
            if self._answered_at > failed_at:
                return  # the store answered a probe after this step failed: go again
            log.warning("store.outage_waiting", store=self._store.description, error=str(cause))
            probing = dataclasses.replace(self._policy, attempts=None, timeout=max(deadline - time.monotonic(), 0.0))
            async for attempt in probing.context():
                with attempt:
                    await self._store.head(self._probe_key)
            self._answered_at = time.monotonic()
            log.info(
                "store.answered_again", store=self._store.description, waited=round(self._answered_at - failed_at, 1)
            )
