"""HTTP plumbing for the API and the recording links: the user agent, proxies, the download client.

Proxies are the environment's (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, read as curl,
httpx and boto3 read them), looked up once per host rather than per request.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from archiver import __version__

USER_AGENT = f"ccall-archiver/{__version__}"


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
    """The client for recordings and for the API: httpx's API over aiohttp's HTTP/1.1, which
    costs about half the CPU per download (the benchmark's figures). Redirects are never
    followed by the client: the Fetcher checks every hop against the allowed hosts. Each link
    goes through the proxy *proxy_for* names for it (the environment's, by default)."""

    def transport(proxy: str | None) -> httpx.AsyncBaseTransport:
        def session() -> aiohttp.ClientSession:  # made on first use, inside the event loop
            # ssl=True: aiohttp's verifying context, made once when aiohttp is imported (the
            # system's trust store, or SSL_CERT_FILE): no context of our own, so a plain-HTTP
            # endpoint costs no certificate loading at all.
            connector = aiohttp.TCPConnector(limit=concurrency * 2, ssl=True)
            return aiohttp.ClientSession(connector=connector)

        # The transport's own TLS context is unused (the session above is ours); this one loads no
        # certificates and verifies, so that if it ever were used it would refuse every peer.
        unused = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return AiohttpTransport(verify=unused, client=session, proxy=httpx.Proxy(proxy) if proxy else None)

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


def timed_out(exc: httpx.TransportError) -> bool:
    """Whether the transfer failed by running out of time.

    httpx-aiohttp reports every aiohttp connection error, a server hanging up included, as
    ``ConnectTimeout``; aiohttp's own exception (the cause) says which it was.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


def failure_name(exc: httpx.TransportError) -> str:
    """The name of what failed: aiohttp's exception under httpx-aiohttp's, else httpx's."""
    cause = exc.__cause__
    return type(cause if isinstance(cause, aiohttp.ClientError) else exc).__name__
