"""The composition root: turns a Config into connected parts. No policy lives here."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import boto3
import botocore.session
import httpx
from botocore.config import Config as BotoConfig
from httpx_aiohttp import AiohttpTransport

from archiver import __version__
from archiver.archive.runner import Archiver
from archiver.config.models import Config
from archiver.core.clock import Clock
from archiver.core.report import RunReport
from archiver.retry import RetryPolicy
from archiver.service.metrics import Health, Metrics
from archiver.source.ccall import CcallClient
from archiver.source.fetch import Fetcher, LinkPolicy
from archiver.state.ledger import Ledger
from archiver.store import Store
from archiver.store.local import LocalStore
from archiver.store.s3 import S3Store
from archiver.store.s3put import DirectPut

USER_AGENT = f"ccall-archiver/{__version__}"


@dataclass
class Parts:
    config: Config
    client: CcallClient
    store: Store
    ledger: Ledger
    archiver: Archiver
    http: httpx.AsyncClient  # for small requests of our own (the dead-man ping)
    control: S3Store | None = None  # where leases and claims live; None: no coordination


def store_identity(config: Config) -> str:
    storage = config.storage
    return storage.url + (f" at {storage.endpoint_url}" if storage.endpoint_url else "")


def make_store(config: Config) -> Store:
    """The store named by ``storage.url``; S3 credentials come from the usual AWS chain."""
    storage = config.storage
    limiter = anyio.CapacityLimiter(config.download.concurrency + 4)
    if storage.kind == "file":
        return LocalStore(storage.path, limiter=limiter)
    return _s3_store(config, storage.bucket, limiter)


def control_store(config: Config, store: Store) -> S3Store | None:
    """Where coordination objects go: *store* itself, a store on ``coordination.bucket``, or None
    (coordination off, or a local archive)."""
    if not config.coordination.enabled or not isinstance(store, S3Store):
        return None
    if config.coordination.bucket is None:
        return store
    # A lock-free bucket: its objects get no retention or legal hold, whatever storage.* says.
    return _s3_store(config, config.coordination.bucket, anyio.CapacityLimiter(4), archive=False)


def _s3_store(config: Config, bucket: str, limiter: anyio.CapacityLimiter, *, archive: bool = True) -> S3Store:
    storage = config.storage
    boto_config = BotoConfig(
        user_agent_extra=USER_AGENT,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=config.download.concurrency + 8,
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if storage.endpoint_url else None,
    )
    core = botocore.session.get_session()
    client = boto3.session.Session(botocore_session=core).client(
        "s3", endpoint_url=storage.endpoint_url, region_name=storage.region, config=boto_config
    )
    return S3Store(
        client,
        bucket,
        endpoint=storage.endpoint_url,
        limiter=limiter,
        object_lock=storage.object_lock if archive else None,
        legal_hold=storage.legal_hold and archive,
        sse=storage.sse,
        sse_kms_key_id=storage.sse_kms_key_id,
        direct_put=direct_put(client, core, bucket, connections=config.download.concurrency + 8) if archive else None,
    )


def direct_put(client: Any, session: botocore.session.Session, bucket: str, *, connections: int) -> DirectPut | None:
    """The fast PUT path for *bucket*, addressed as botocore addresses it; None without credentials
    (boto3 then reports them missing on the first request)."""
    credentials = session.get_credentials()
    if credentials is None:
        return None
    probe = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": DirectPut.probe_key})
    object_url = DirectPut.url_template(probe)
    return DirectPut(
        object_url=object_url,
        proxy=env_proxy(object_url("")),
        credentials=credentials,
        region=client.meta.region_name,
        connections=connections,
        ca_bundle=session.get_config_variable("ca_bundle"),
    )


def env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY/HTTPS_PROXY name for *url*, unless NO_PROXY exempts its host (as
    curl, httpx and boto3 read them)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(parts.scheme)


def download_client(
    timeout: float,
    concurrency: int,
    headers: dict[str, str],
    *,
    proxy_for: Callable[[str], str | None] = env_proxy,
) -> httpx.AsyncClient:
    """The client for recordings: httpx's API over aiohttp's HTTP/1.1, which costs about half the
    CPU per download (the benchmark's figures). Redirects are never followed by the client:
    the Fetcher checks every hop against the allowed hosts. Each link goes through the proxy
    *proxy_for* names for it (the environment's, by default)."""

    def transport(proxy: str | None) -> httpx.AsyncBaseTransport:
        def session() -> aiohttp.ClientSession:  # made on first use, inside the event loop
            connector = aiohttp.TCPConnector(limit=concurrency * 2, ssl=httpx.create_ssl_context())
            return aiohttp.ClientSession(connector=connector)

        return AiohttpTransport(client=session, proxy=httpx.Proxy(proxy) if proxy else None)

    return httpx.AsyncClient(
        transport=_ByProxy(transport, proxy_for),
        timeout=timeout,
        headers=headers,
        follow_redirects=False,
        trust_env=False,  # the proxy is the transport's; httpx would route around it
    )


class _ByProxy(httpx.AsyncBaseTransport):
    """Sends each request through the proxy named for its scheme and host (recordings may be on
    other hosts than the API, some exempt by NO_PROXY), looked up once per host."""

    def __init__(
        self, make: Callable[[str | None], httpx.AsyncBaseTransport], proxy_for: Callable[[str], str | None]
    ) -> None:
        self._make = make
        self._proxy_for = proxy_for
        self._routes: dict[tuple[str, str, int | None], str | None] = {}
        self._transports: dict[str | None, httpx.AsyncBaseTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        where = (url.scheme, url.host, url.port)
        if where not in self._routes:
            self._routes[where] = self._proxy_for(str(url))
        proxy = self._routes[where]
        if proxy not in self._transports:
            self._transports[proxy] = self._make(proxy)
        return await self._transports[proxy].handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()


@asynccontextmanager
async def assemble(
    config: Config,
    *,
    ledger: Ledger | None = None,
    clock: Clock | None = None,
    api_retry: RetryPolicy | None = None,
    download_retry: RetryPolicy | None = None,
    store_retry: RetryPolicy | None = None,
    progress: Callable[[RunReport], None] | None = None,
    metrics: Metrics | None = None,
    health: Health | None = None,
) -> AsyncIterator[Parts]:
    """Open every part *config* names and close them all on exit.

    *ledger* overrides ``state.path`` (the dry run passes an in-memory one); the retry
    policies override the defaults (tests shorten them).
    """
    source, download = config.source, config.download
    headers = {"User-Agent": USER_AGENT}
    api_http = httpx.AsyncClient(
        timeout=source.request_timeout.total_seconds(), headers=headers, follow_redirects=False
    )
    download_http = download_client(download.timeout.total_seconds(), download.concurrency, headers)
    store = make_store(config)
    control = control_store(config, store)
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
        archiver = Archiver(
            client=client,
            fetcher=fetcher,
            store=store,
            ledger=ledger,
            tz=source.tz,
            prefix=config.storage.prefix,
            concurrency=download.concurrency,
            missing_after=download.missing_after,
            source_info={"host": urlsplit(source.base_url).hostname, "domain_name": source.domain_name},
            source_name=config.name,
            clock=clock,
            progress=progress,
            store_retry=store_retry,
            metrics=metrics,
            health=health,
            close_after=config.poll.lookback + config.poll.settle,
        )
        yield Parts(
            config=config, client=client, store=store, ledger=ledger, archiver=archiver, http=api_http, control=control
        )
    finally:
        await api_http.aclose()
        await download_http.aclose()
        await store.aclose()
        if control is not None and control is not store:
            await control.aclose()
        if own_ledger:
            ledger.close()
