"""The daemon for every source of a config file: what ``archiver run`` runs.

One :class:`~archiver.service.daemon.Daemon` per source, all in one process, sharing the
metrics, the health, systemd's notifications and the dead-man ping. With several sources on
S3, instances sharing a bucket split the sources between them
(:class:`~archiver.coordination.membership.Membership`); each source is polled under its lease.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from datetime import timedelta

import anyio
import structlog

from archiver.asgi import bind, serve
from archiver.compose import Parts, assemble
from archiver.config.models import Config
from archiver.coordination.identity import owner, source_id
from archiver.coordination.lease import Lease
from archiver.coordination.membership import Membership
from archiver.core.clock import SystemClock
from archiver.errors import ConfigError, TransientError
from archiver.service.daemon import Daemon
from archiver.service.endpoints import endpoints
from archiver.service.health import Health
from archiver.service.metrics import DEFAULT_SOURCE, Metrics, SourceMetrics
from archiver.service.notify import Notifier
from archiver.service.ping import DeadManPing
from archiver.service.preflight import ensure_create_only
from archiver.service.results import CommandResults
from archiver.service.shutdown import SHUTDOWN_GRACE, supervised
from archiver.store import ControlStore, Store

log = structlog.get_logger("archiver.service")


class Supervisor:
    """Runs the daemons of *configs* (one per source) until a signal stops them."""

    def __init__(self, configs: tuple[Config, ...], *, notifier: Notifier | None = None) -> None:
        self._configs = configs
        poll = configs[0].poll  # shared by every source
        interval = poll.interval.total_seconds()
        self.metrics = Metrics()
        self.metrics.install_retry_hook()
        self.metrics.describe(interval=poll.interval, lookback=poll.lookback, spool_dir=configs[0].download.spool_dir)
        self.metrics.registry.register(CommandResults(configs[0].textfile_dir))
        for config in configs:
            if config.source.recording_retention is not None:
                retention = config.source.recording_retention.total_seconds()
                self.metrics.recording_retention.labels(source=config.name or DEFAULT_SOURCE).set(retention)
        self._notifier = notifier or Notifier()
        stall = max(300.0, 3 * interval, 2 * (self._notifier.watchdog_seconds or 0))
        self.health = Health(stall_after=stall, ready_within=max(180.0, 3 * interval))
        self._owner = owner(configs)

    async def run(self) -> None:
        """Start every source's daemon; return when all have stopped."""
        configs, metrics, health, notifier, me = self._configs, self.metrics, self.health, self._notifier, self._owner
        poll = configs[0].poll
        async with contextlib.AsyncExitStack() as stack:
            all_parts = [
                await stack.enter_async_context(
                    assemble(c, observers=[SourceMetrics(metrics, c.name or DEFAULT_SOURCE), health])
                )
                for c in configs
            ]
            for parts in all_parts:
                await ensure_create_only(parts)
            sock = _bind_metrics(configs[0])
            service = await stack.enter_async_context(anyio.create_task_group())
            if sock is not None:
                service.start_soon(serve, endpoints(metrics, health), sock)
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
                service.cancel_scope.cancel()  # the endpoints stop with the daemons
            log.info("daemon.stopped")


def _lease(parts: Parts, me: str) -> Lease | None:
    """The lease that lets one of several daemons on this bucket poll this source (S3 only)."""
    store = parts.control
    if store is None:
        return None
    key = f"{parts.config.control_prefix}/leases/{source_id(parts.config)}.json"
    return Lease(store, key, ttl=parts.config.coordination.lease_ttl, clock=SystemClock(), owner=me)


def _membership(all_parts: list[Parts], me: str) -> Membership | None:
    """With several sources on S3, the instances split them between themselves."""
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


def _bind_metrics(config: Config) -> socket.socket | None:
    """The socket ``metrics.listen`` names, bound; None when it names none."""
    if config.metrics.listen is None:
        return None
    host, _, port = config.metrics.listen.rpartition(":")
    try:
        sock = bind(host, int(port))
    except OSError as exc:
        raise ConfigError([f"At 'metrics.listen': cannot listen on {config.metrics.listen}: {exc.strerror}"]) from None
    log.info("metrics.listening", address=config.metrics.listen)
    return sock


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
    stores: list[Store | ControlStore] = [parts.store]
    if parts.control is not None and parts.config.coordination.bucket is not None:
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
