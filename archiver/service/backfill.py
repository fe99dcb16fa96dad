"""Backfills of every source of a config file: what ``archiver backfill`` runs.

A source whose archive is on S3 with coordination on is shared by day with the other hosts
running the same backfill (:mod:`archiver.coordination.shards`); with several sources, a first
pass takes every source's unclaimed days without waiting for peers, so that hosts spread over
the sources too, and the second pass finishes each.
"""

from __future__ import annotations

from datetime import datetime

import anyio
import structlog

from archiver.compose import assemble
from archiver.compose.stores import close_stores, make_control_store, make_store
from archiver.config.models import Config
from archiver.coordination.identity import owner, source_id
from archiver.coordination.shards import ShardRun, join_run, range_folder, sharded_backfill
from archiver.core.clock import SystemClock
from archiver.core.report import RunReport
from archiver.service.preflight import ensure_create_only
from archiver.service.progress import BackfillProgress
from archiver.service.shutdown import SHUTDOWN_GRACE, supervised


class Backfiller:
    """Backfills each source of *configs* over its range in *ranges*, with progress on a *terminal*."""

    def __init__(self, configs: tuple[Config, ...], ranges: list[tuple[datetime, datetime]], *, terminal: bool) -> None:
        self._configs = configs
        self._ranges = ranges
        self._terminal = terminal
        self._owner = owner(configs)
        self._started: dict[int, ShardRun] = {}
        self._runs: dict[int, str] = {}

    def spread(self) -> bool:
        """Join each shared source's run, then the first pass over several shared sources (nothing
        more to do with one). False when a signal stopped it."""
        if len(self._configs) < 2:
            return True
        for index, (config, (since, until)) in enumerate(zip(self._configs, self._ranges, strict=True)):
            if shared(config):
                self._runs[index] = anyio.run(self._join, config, since, until)
        for index, (config, (since, until)) in enumerate(zip(self._configs, self._ranges, strict=True)):
            if shared(config):
                first = self._backfill_one(config, since, until, wait=False, run_id=self._runs[index])
                if first is None:
                    return False
                assert isinstance(first, ShardRun)
                self._started[index] = first
        return True

    def run(self, index: int) -> RunReport | None:
        """The *index*-th source's whole backfill; None when a signal stopped it."""
        since, until = self._ranges[index]
        outcome = self._backfill_one(
            self._configs[index], since, until, resume=self._started.get(index), run_id=self._runs.get(index)
        )
        if outcome is None:
            return None
        return outcome.total if isinstance(outcome, ShardRun) else outcome

    async def _join(self, config: Config, since: datetime, until: datetime) -> str:
        """Join (or start) the run of *config*'s backfill of the range, as the command starts."""
        store = make_store(config)  # the stores alone: no API, no ledger
        control = make_control_store(config, store)
        assert control is not None  # a shared source: S3 with coordination on
        try:
            folder = range_folder(config.control_prefix, source_id(config), since, until)
            return await join_run(control, folder, SystemClock().now(), self._owner)
        finally:
            await close_stores(config, store, control)

    def _backfill_one(
        self,
        config: Config,
        since: datetime,
        until: datetime,
        *,
        wait: bool = True,
        resume: ShardRun | None = None,
        run_id: str | None = None,
    ) -> ShardRun | RunReport | None:
        """One source's backfill: sharded by day with peers when shared; None when a signal stopped it."""
        progress = BackfillProgress(terminal=self._terminal)

        async def go() -> ShardRun | RunReport | None:
            if config.name:
                structlog.contextvars.bind_contextvars(source=config.name)  # every line of this source's backfill
            async with assemble(config, observers=[progress]) as parts:
                await ensure_create_only(parts)
                store = parts.control
                if store is not None:
                    return await supervised(
                        parts.archiver,
                        lambda: sharded_backfill(
                            parts.archiver,
                            store,
                            control_prefix=config.control_prefix,
                            source=source_id(config),
                            since=since,
                            until=until,
                            tz=parts.config.source.tz,  # the archive's zone
                            ttl=config.coordination.lease_ttl,
                            clock=SystemClock(),
                            owner=self._owner,
                            wait=wait,
                            resume=resume,
                            run_id=run_id,
                        ),
                        grace=SHUTDOWN_GRACE,
                    )
                return await supervised(
                    parts.archiver, lambda: parts.archiver.backfill(since, until), grace=SHUTDOWN_GRACE
                )

        try:
            return anyio.run(go)
        finally:
            progress.close()


def shared(config: Config) -> bool:
    """Whether this source's backfill is shared by day with peers (coordination on, S3)."""
    return config.coordination.enabled and config.storage.kind == "s3"
