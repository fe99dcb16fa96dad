"""Store steps that fail: waited out together behind one probe, and each retried with backoff.

botocore retries each S3 request itself (standard mode: a few attempts within seconds). A failure
that outlasts that reaches the archive as :class:`StoreUnavailable`. The call's store step does
not then loop around its own request at once:

- **Is the store there?** The first worker to arrive probes it with one cheap request (a HEAD of
  a key that need not exist), backing off while it does not answer, and the others wait for its
  verdict: an outage costs one request per backoff, not one per worker.
- **Is it this step?** A probe that answers proves only that the store is reachable. A store can
  keep refusing one write while answering everything else (SlowDown on a busy prefix, a 500 tied
  to one key, a 409 on a contended key, BadDigest from a damaged buffer), so each step also waits
  before it runs again, jittered and growing (the policy's ``wait_initial`` to ``wait_max``); each
  wait is counted and logged once, as every retry is (``stamina.retry_scheduled``).

Past *patience* since the step first failed, the step fails with StoreUnavailable: the daemon
retries the call at its next poll, a backfill names it and exits 1. Nothing is lost either way,
as nothing was written.
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


def _retry_store_step(exc: Exception) -> bool | float:
    if isinstance(exc, StoreUnavailable):
        return exc.retry_after if exc.retry_after is not None else True
    return False


class StoreOutage:
    """The gate every store step of one archive passes through (see the module's text).

    *policy* gives the patience (its ``timeout``) and the backoff of both the probe and each
    step; *probe_key* is read with HEAD and need not exist.
    """

    def __init__(self, store: Store, probe_key: str, policy: RetryPolicy) -> None:
        self._store = store
        self._probe_key = probe_key
        self._policy = policy
        self._lock = anyio.Lock()
        self._answered_at = float("-inf")  # when the store last answered a probe (monotonic)

    async def run(self, step: Callable[[], Awaitable[T]]) -> T:
        """``await step()``; after each StoreUnavailable, once the store answers a probe and the
        step's own backoff has passed, once more; until the patience is spent."""
        started = time.monotonic()
        try:  # nearly every step passes at once: the retry machinery is set up only for the others
            return await step()
        except StoreUnavailable as exc:
            failure: StoreUnavailable | None = exc
            last = exc
        patience = self._policy.timeout if self._policy.timeout is not None else float("inf")
        retrying = dataclasses.replace(self._policy, attempts=None, timeout=patience - (time.monotonic() - started))
        async for attempt in retrying.context(on=_retry_store_step):
            with attempt:
                failed_at = time.monotonic()
                if failure is None and failed_at >= started + patience:
                    raise last  # the wait ran into the patience: no try starts after it
                try:
                    if failure is not None:  # the first try's failure is the first attempt's
                        failed_at, first, failure = started, failure, None
                        raise first
                    return await step()
                except StoreUnavailable as exc:
                    last = exc
                    await self._until_answered(failed_at, started + patience, exc)
                    raise  # the step's own backoff, then its next attempt
        raise AssertionError("unreachable: the retry context re-raises the last failure")  # pragma: no cover

    async def _until_answered(self, failed_at: float, deadline: float, cause: StoreUnavailable) -> None:
        """Return once the store has answered a probe sent after *failed_at*."""
        async with self._lock:  # one worker probes; the others wait here for its verdict
            if self._answered_at > failed_at:
                return
            try:
                await self._store.head(self._probe_key)
            except StoreUnavailable:
                await self._wait_out(failed_at, deadline, cause)
            self._answered_at = time.monotonic()

    async def _wait_out(self, failed_at: float, deadline: float, cause: StoreUnavailable) -> None:
        """Probe, backing off, until the store answers or *deadline* passes (StoreUnavailable)."""
        if time.monotonic() >= deadline:  # the step outlasted the patience: no wait is left
            raise cause
        log.warning("store.outage_waiting", store=self._store.description, error=str(cause))
        probing = dataclasses.replace(self._policy, attempts=None, timeout=max(deadline - time.monotonic(), 0.0))
        async for attempt in probing.context():
            with attempt:
                await self._store.head(self._probe_key)
        log.info("store.answered_again", store=self._store.description, waited=round(time.monotonic() - failed_at, 1))
