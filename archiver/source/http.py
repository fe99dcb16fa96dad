"""HTTP for the API and the recording links: one aiohttp session, the user agent, proxies.

aiohttp directly (no httpx over it): its C-accelerated HTTP/1.1 costs about a third of httpx's
CPU per request, and httpx's import and request model were a tenth of a short backfill's CPU
(the benchmark's figures). What the rest of the archiver sees is this module's
:class:`HttpClient`, :class:`Response` and :class:`HttpUnanswered`; aiohttp's own exceptions do
not leave it.

Proxies are the environment's (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, read as curl,
httpx and boto3 read them), looked up once per host rather than per request. Redirects are
never followed here: the Fetcher checks every hop against the allowed hosts. Cookies are
neither kept nor sent.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from archiver import __version__

USER_AGENT = f"ccall-archiver/{__version__}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY/HTTPS_PROXY name for *url*, unless NO_PROXY exempts its host (as
    curl, httpx and boto3 read them)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(parts.scheme)


class HttpUnanswered(Exception):
    """No (whole) answer: the connection failed, the server hung up, or time ran out."""

    def __init__(self, name: str, *, timed_out: bool, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name  # the failure's name (aiohttp's exception class), for messages
        self.timed_out = timed_out

    @classmethod
    def of(cls, exc: BaseException) -> HttpUnanswered:
        return cls(type(exc).__name__, timed_out=isinstance(exc, TimeoutError), detail=str(exc))


@dataclass(frozen=True)
class Answer:
    """A whole answer, read."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Response:
    """An answer whose body is still to be read (:meth:`chunks`)."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw
        self.status = raw.status
        self.headers = raw.headers

    @property
    def location(self) -> str | None:
        """Where a redirect points (None when this is not one)."""
        return self.headers.get("location") if self.status in _REDIRECTS else None

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body, decoded as its Content-Encoding says, in chunks of up to *size* bytes."""
        try:
            async for chunk in self._raw.content.iter_chunked(size):
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise HttpUnanswered.of(exc) from None


class HttpClient:
    """Requests to the API and the recording servers: at most *connections* at once, each
    network read given *timeout* seconds, our user agent on every request."""

    def __init__(
        self,
        *,
        timeout: float,
        connections: int,
        proxy_for: Callable[[str], str | None] = env_proxy,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._connections = connections
        self._proxy_for = proxy_for
        self._routes: dict[tuple[str, str | None, int | None], str | None] = {}
        self._session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        within: float | None = None,
    ) -> AsyncIterator[Response]:
        """Send one request; yield the answer with its body unread (the whole exchange *within*
        that many seconds, when given). Raises HttpUnanswered."""
        limit = self._timeout if within is None else aiohttp.ClientTimeout(total=within)
        try:
            async with self._open_session().request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=limit,
                allow_redirects=False,
                proxy=self._proxy(url),
            ) as raw:
                yield Response(raw)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise HttpUnanswered.of(exc) from None

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        within: float | None = None,
        max_bytes: int = 64 << 20,
    ) -> Answer:
        """Send one request and read its whole answer (up to *max_bytes*). Raises HttpUnanswered."""
        headers = {}
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        async with self.open(method, url, headers=headers, data=data, within=within) as response:
            body = bytearray()
            async for chunk in response.chunks(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    break
            return Answer(response.status, response.headers, bytes(body))

    def _proxy(self, url: str) -> str | None:
        parts = urlsplit(url)
        where = (parts.scheme, parts.hostname, parts.port)
        if where not in self._routes:
            self._routes[where] = self._proxy_for(url)
        return self._routes[where]

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the event loop, as aiohttp wants
            # ssl=True: aiohttp's verifying context, made once when aiohttp is imported (the
            # system's trust store, or SSL_CERT_FILE): no context of our own.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections * 2, ssl=True),
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
