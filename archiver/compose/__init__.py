"""The composition root: turns a Config into connected parts. No policy lives here.

:func:`assemble` opens the API client, the download client, the stores and the ledger, builds
the archiving path on them, and closes everything on exit. Tests pass their own ledger, clock,
retry policies and observers through its keyword arguments, never by patching.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from archiver.archive.call import CallArchiver
from archiver.archive.dayclose import DayCloser
from archiver.archive.daysync import DaySync
from archiver.archive.encrypt import Encryptor
from archiver.archive.events import ArchiveEvents, EventFanout
from archiver.archive.outage import StoreOutage
from archiver.archive.rearchive import Rearchiver
from archiver.archive.runner import Archiver
from archiver.archive.seal import Sealer
from archiver.archive.zone import in_archive_zone
from archiver.compose.stores import close_stores, make_control_store, make_key_store, make_store, store_identity
from archiver.config.models import Config
from archiver.core.clock import Clock, SystemClock
from archiver.core.parking import ParkingSchedule
from archiver.retry import STORE_PATIENCE, RetryPolicy
from archiver.source.ccall import CcallClient
from archiver.source.fetch import Fetcher, LinkPolicy
from archiver.source.http import HttpClient
from archiver.state.ledger import Ledger
from archiver.store import ControlStore, Store
from archiver.store.keys import KeyStore


@dataclass
class Parts:
    """One source's connected parts, open while :func:`assemble`'s block runs."""

    config: Config
    client: CcallClient
    store: Store
    ledger: Ledger
    archiver: Archiver
    http: HttpClient  # for small requests of our own (the dead-man ping)
    fetcher: Fetcher
    rearchiver: Rearchiver
    control: ControlStore | None = None  # where leases and claims live; None: no coordination
    keys: KeyStore | None = None  # where recordings' keys live (storage.encryption); None: not encrypted


@asynccontextmanager
async def assemble(
    config: Config,
    *,
    ledger: Ledger | None = None,
    clock: Clock | None = None,
    api_retry: RetryPolicy | None = None,
    download_retry: RetryPolicy | None = None,
    store_retry: RetryPolicy | None = None,
    observers: Sequence[ArchiveEvents] = (),
    zone_from_seals: bool = True,
) -> AsyncIterator[Parts]:
    """Open every part *config* names and close them all on exit.

    *ledger* overrides ``state.path`` (the dry run passes an in-memory one); the retry
    policies override the defaults (tests shorten them); *observers* are told what the
    archiving path does (metrics, health, progress).

    Every part files and seals in the archive's zone, read from its seals first
    (:func:`~archiver.archive.zone.in_archive_zone`; ``Parts.config`` says it): a configuration
    naming another is a ConfigError before anything is opened or written. *zone_from_seals*
    False takes the configuration's zone as it is (``check``, which reports the seals' itself).
    """
    store = make_store(config)
    try:
        if zone_from_seals:
            config = await in_archive_zone(config, store, patience=store_retry or STORE_PATIENCE)
    except BaseException:
        await store.aclose()
        raise
    source, download = config.source, config.download
    clock = clock or SystemClock()
    api_http = HttpClient(timeout=source.request_timeout.total_seconds(), connections=4)
    download_http = HttpClient(timeout=download.timeout.total_seconds(), connections=download.concurrency)
    control = make_control_store(config, store)
    keys = make_key_store(config)
    own_ledger = ledger is None
    if ledger is None:
        ledger = Ledger.open(config.state.path, store_identity=store_identity(config))
    try:
        client = CcallClient(
            api_http,
            base_url=source.base_url,
            api_key=source.api_key.get_secret_value(),
            api_secret=source.api_secret.get_secret_value(),
            domain_name=source.domain_name,
            page_size=source.page_size,
            retry=api_retry,
        )
        fetcher = Fetcher(
            download_http,
            LinkPolicy(source.recording_hosts),
            max_bytes=download.max_bytes,
            spool_dir=download.spool_dir,
            retry=download_retry,
            not_found_retry=download_retry,
        )
        prefix = config.storage.prefix
        outage = StoreOutage(store, f"{config.control_prefix}/outage-probe", store_retry or STORE_PATIENCE)
        source_info = {"host": urlsplit(source.base_url).hostname, "domain_name": source.domain_name}
        encryptor = None
        if keys is not None and config.storage.encryption is not None:
            encryptor = Encryptor(
                keys,
                config.storage.encryption.age_recipients,
                store=store,
                outage=outage,
                keys_outage=StoreOutage(
                    keys.store, f"{keys.prefix}/outage-probe".lstrip("/"), store_retry or STORE_PATIENCE
                ),
                spool_dir=download.spool_dir,
                limiter=anyio.CapacityLimiter(download.concurrency),
            )
        calls = CallArchiver(
            fetcher=fetcher,
            store=store,
            ledger=ledger,
            clock=clock,
            tz=source.tz,
            prefix=prefix,
            schedule=ParkingSchedule(missing_after=download.missing_after),
            outage=outage,
            downloads=anyio.CapacityLimiter(download.concurrency),
            source_info=source_info,
            storage_class=config.storage.storage_class,
            encryptor=encryptor,
        )
        closer = DayCloser(
            store,
            ledger,
            prefix=prefix,
            tz=source.tz,
            close_after=config.poll.lookback + config.poll.settle,
            sealer=Sealer(store, prefix, clock, concurrency=download.concurrency, timezone=source.tz.key),
        )
        archiver = Archiver(
            client=client,
            calls=calls,
            ledger=ledger,
            day_sync=DaySync(store, ledger, prefix=prefix, clock=clock, outage=outage),
            closer=closer,
            clock=clock,
            tz=source.tz,
            prefix=prefix,
            concurrency=download.concurrency,
            events=EventFanout(observers),
        )
        yield Parts(
            config=config,
            client=client,
            store=store,
            ledger=ledger,
            archiver=archiver,
            http=api_http,
            fetcher=fetcher,
            rearchiver=Rearchiver(
                client=client,
                fetcher=fetcher,
                calls=calls,
                store=store,
                ledger=ledger,
                closer=closer,
                clock=clock,
                tz=source.tz,
                prefix=prefix,
                source_info=source_info,
                outage=outage,
            ),
            control=control,
            keys=keys,
        )
    finally:
        await api_http.aclose()
        await download_http.aclose()
        await close_stores(config, store, control)
        if keys is not None:
            await keys.aclose()
        if own_ledger:
            ledger.close()
