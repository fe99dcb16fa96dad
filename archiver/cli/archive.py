"""The commands that archive: ``run`` (the daemon) and ``backfill``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import anyio
import structlog

from archiver.audit.survey import Survey
from archiver.cli.common import (
    SHUTDOWN_GRACE,
    dates,
    heading,
    owner,
    setup,
    source_id,
)
from archiver.cli.output import print_report
from archiver.compose import Parts, assemble
from archiver.config.models import Config
from archiver.coordination.lease import Lease
from archiver.coordination.membership import Membership
from archiver.coordination.shards import ShardRun, sharded_backfill
from archiver.core.clock import SystemClock
from archiver.core.report import RunReport
from archiver.errors import EXIT_FAILED, EXIT_OK, ConfigError, TransientError
from archiver.service.daemon import Daemon, DeadManPing, supervised
from archiver.service.metrics import Health, Metrics, serve
from archiver.service.notify import Notifier
from archiver.service.progress import BackfillProgress, TerminalLogStream
from archiver.state.ledger import Ledger
from archiver.store import Store

log = structlog.get_logger("archiver.cli.main")


# -- run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    configs = setup(args)
    poll = configs[0].poll  # shared by every source
    interval = poll.interval.total_seconds()
    metrics = Metrics()
    metrics.install_retry_hook()
    notifier = Notifier()
    stall = max(300.0, 3 * interval, 2 * (notifier.watchdog_seconds or 0))
    health = Health(stall_after=stall, ready_within=max(180.0, 3 * interval))
    me = owner(configs)

    async def go() -> None:
        async with contextlib.AsyncExitStack() as stack:
            all_parts = [await stack.enter_async_context(assemble(c, metrics=metrics, health=health)) for c in configs]
            server = _serve_metrics(configs[0], metrics, health)
            try:
                ready = all([await _preflight(parts) for parts in all_parts])
                if ready:
                    where = ", ".join(parts.store.description for parts in all_parts[:3])
                    notifier.ready(f"started; archiving into {where}")
                ping = DeadManPing(all_parts[0].http, poll.ping_url) if poll.ping_url else None  # one, shared
                membership = _membership(all_parts, me)
                ids = [source_id(parts.config) for parts in all_parts]
                daemons = [
                    Daemon(
                        parts.archiver,
                        lease=_lease(parts, me),
                        ours=_our_turn(membership, sid, ids),
                        label=parts.config.name,
                        ledger=parts.ledger,
                        client=parts.client,
                        poll=poll,
                        clock=SystemClock(),
                        metrics=metrics,
                        health=health,
                        notifier=notifier,
                        ping=ping,
                        ready=ready,
                        secrets=parts.config.secrets(),
                    )
                    for parts, sid in zip(all_parts, ids, strict=True)
                ]

                async def every_daemon() -> None:
                    async with anyio.create_task_group() as daemons_group:
                        for daemon in daemons:
                            daemons_group.start_soon(daemon.run)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(notifier.watchdog, health)
                    if membership is not None:
                        await _refresh(membership)
                        tg.start_soon(_keep_membership, membership, configs[0].coordination.lease_ttl)
                    archivers = [parts.archiver for parts in all_parts]
                    await supervised(archivers, every_daemon, grace=SHUTDOWN_GRACE, on_stop=notifier.stopping)
                    tg.cancel_scope.cancel()
                if membership is not None:
                    with anyio.CancelScope(shield=True), contextlib.suppress(TransientError):
                        await membership.leave()
            finally:
                if server is not None:
                    server.shutdown()
            log.info("daemon.stopped")

    anyio.run(go)
    return EXIT_OK


def _lease(parts: Parts, me: str) -> Lease | None:
    """The lease that lets one of several daemons on this bucket poll this source (S3 only)."""
    store = parts.control
    if store is None:
        return None
    key = f"{parts.config.control_prefix}/leases/{source_id(parts.config)}.json"
    return Lease(store, key, ttl=parts.config.coordination.lease_ttl, clock=SystemClock(), owner=me)


def _membership(all_parts: list[Parts], me: str) -> Membership | None:
    """With several sources on S3, the instances split them between themselves (archiver.coordination.membership)."""
    store = all_parts[0].control
    if len(all_parts) < 2 or store is None:
        return None
    config = all_parts[0].config
    return Membership(store, config.control_prefix, owner=me, ttl=config.coordination.lease_ttl, clock=SystemClock())


def _our_turn(membership: Membership | None, source: str, sources: list[str]) -> Callable[[], bool] | None:
    """Whether *source* is in this instance's share now; None when sources are not spread."""
    if membership is None:
        return None
    return lambda: source in membership.share(sources)


async def _refresh(membership: Membership) -> None:
    try:
        await membership.refresh()
    except TransientError as exc:
        log.warning("members.unavailable", error=str(exc))


async def _keep_membership(membership: Membership, ttl: timedelta) -> None:
    while True:
        await anyio.sleep(ttl.total_seconds() / 3)
        await _refresh(membership)


def _serve_metrics(config: Config, metrics: Metrics, health: Health) -> ThreadingHTTPServer | None:
    if config.metrics.listen is None:
        return None
    try:
        server = serve(config.metrics.listen, metrics, health)
    except OSError as exc:
        raise ConfigError([f"At 'metrics.listen': cannot listen on {config.metrics.listen}: {exc.strerror}"]) from None
    log.info("metrics.listening", address=config.metrics.listen)
    return server


async def _preflight(parts: Parts) -> bool:
    """True when the API and the bucket both answered; FatalError when either refused us."""
    answered = True
    source = parts.config.name or parts.config.source.base_url
    try:
        regs = await parts.client.registrations()
        log.info("daemon.api_answered", source=source, registrations=len(regs))
    except TransientError as exc:
        log.warning("daemon.api_unreachable", source=source, error=str(exc))
        answered = False
    stores: list[Store] = [parts.store]
    if parts.control is not None and parts.control is not parts.store:
        stores.append(parts.control)
    for store in stores:
        try:
            async for _ in store.list_keys(parts.config.control_prefix + "/"):
                break
            log.info("daemon.store_answered", store=store.description)
        except TransientError as exc:
            log.warning("daemon.store_unreachable", store=store.description, error=str(exc))
            answered = False
    return answered


# -- backfill ---------------------------------------------------------------------------------


def backfill(args: argparse.Namespace) -> int:
    terminal = sys.stderr.isatty() and not args.dry_run
    configs = setup(args, stream=TerminalLogStream(sys.stderr) if terminal else None, quiet=terminal)
    ranges = [dates(args, config) for config in configs]  # every --since/--until problem before any work
    if args.dry_run:
        return max(_dry_run(configs, config, *span) for config, span in zip(configs, ranges, strict=True))
    me = owner(configs)
    started: dict[int, ShardRun] = {}
    if len(configs) > 1:
        # A first pass takes every source's unclaimed days without waiting for peers, so that hosts
        # sharing a multi-source backfill spread over the sources too; the second pass finishes.
        for index, (config, (since, until)) in enumerate(zip(configs, ranges, strict=True)):
            if _shared(config):
                first = _backfill_one(config, since, until, terminal=terminal, me=me, wait=False)
                if first is None:
                    return _interrupted()
                assert isinstance(first, ShardRun)
                started[index] = first
    worst = EXIT_OK
    for index, (config, (since, until)) in enumerate(zip(configs, ranges, strict=True)):
        title = heading(configs, config)
        if title:
            print(title, flush=True)
        outcome = _backfill_one(config, since, until, terminal=terminal, me=me, resume=started.get(index))
        if outcome is None:
            return _interrupted()
        report = outcome.total if isinstance(outcome, ShardRun) else outcome
        print_report(report, sys.stdout)
        if not report.complete:
            worst = EXIT_FAILED
    return worst


def _interrupted() -> int:
    print("backfill interrupted; run it again to finish (nothing is written twice)", file=sys.stderr)
    return EXIT_FAILED


def _shared(config: Config) -> bool:
    """Whether this source's backfill is shared by day with peers (coordination on, S3)."""
    return config.coordination.enabled and config.storage.kind == "s3"


def _backfill_one(
    config: Config,
    since: datetime,
    until: datetime,
    *,
    terminal: bool,
    me: str,
    wait: bool = True,
    resume: ShardRun | None = None,
) -> ShardRun | RunReport | None:
    """One source's backfill: sharded by day with peers when shared; None when a signal stopped it."""
    progress = BackfillProgress(terminal=terminal)

    async def go() -> ShardRun | RunReport | None:
        if config.name:
            structlog.contextvars.bind_contextvars(source=config.name)  # every line of this source's backfill
        async with assemble(config, progress=progress) as parts:
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
                        tz=config.source.tz,
                        ttl=config.coordination.lease_ttl,
                        clock=SystemClock(),
                        owner=me,
                        wait=wait,
                        resume=resume,
                    ),
                    grace=SHUTDOWN_GRACE,
                )
            return await supervised(parts.archiver, lambda: parts.archiver.backfill(since, until), grace=SHUTDOWN_GRACE)

    try:
        return anyio.run(go)
    finally:
        progress.close()


def _dry_run(configs: tuple[Config, ...], config: Config, since: datetime, until: datetime) -> int:
    async def go() -> dict[Any, dict[str, int]]:
        async with assemble(config, ledger=Ledger.in_memory(store_identity="dry-run")) as parts:
            return await survey(parts).plan(since, until)

    found = anyio.run(go)
    title = heading(configs, config)
    if title:
        print(title)
    print(f"plan for {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} ({config.source.timezone}), nothing written:")
    print(f"{'day':<12}{'calls':>8}{'recordings':>12}{'stored':>8}{'to archive':>12}")
    total = dict.fromkeys(("calls", "recordings", "stored", "to_archive"), 0)
    for day, counts in found.items():
        print(
            f"{day.isoformat():<12}{counts['calls']:>8}{counts['recordings']:>12}{counts['stored']:>8}{counts['to_archive']:>12}"
        )
        for key in total:
            total[key] += counts[key]
    print(f"{'total':<12}{total['calls']:>8}{total['recordings']:>12}{total['stored']:>8}{total['to_archive']:>12}")
    return EXIT_OK


def survey(parts: Parts) -> Survey:
    config = parts.config
    return Survey(
        parts.client,
        parts.store,
        tz=config.source.tz,
        prefix=config.storage.prefix,
        concurrency=config.download.concurrency,
    )
