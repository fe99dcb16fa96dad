"""HTTP for the API, the recording links and the dead-man ping: one ``httpx.AsyncClient`` each.

httpx on its own transport (httpcore over anyio). What the rest of the archiver sees is this
module's :class:`HttpClient`, :class:`Response`, :class:`Answer` and :class:`HttpUnanswered`;
httpx's exceptions are translated here, once, and do not leave it.

- Proxies are the environment's (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``),
  read by httpx when the client is made (``trust_env``), per request URL: a recording link on a
  ``NO_PROXY`` host goes direct.
- Redirects are never followed here: the Fetcher checks every hop against the allowed hosts.
- Cookies are neither kept nor sent: a PBX must not steer later requests through a cookie.
- TLS is verified against the system's trust store (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` apply).
"""

from __future__ import annotations

import contextlib
import functools
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import httpx

from archiver import __version__

USER_AGENT = f"ccall-archiver/{__version__}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpUnanswered(Exception):
    """No (whole) answer: the connection failed, the server hung up, or time ran out."""

    def __init__(self, name: str, *, timed_out: bool, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name  # the failure's name (httpx's exception class), for messages
        self.timed_out = timed_out

    @classmethod
    def of(cls, exc: BaseException) -> HttpUnanswered:
        timed_out = isinstance(exc, httpx.TimeoutException | TimeoutError)
        return cls(type(exc).__name__, timed_out=timed_out, detail=str(exc))


# What a request can fail with short of an answer: httpx's transport errors (connect, read,
# protocol, timeouts), a deadline of our own (``within``), and the OS.
_UNANSWERED = (httpx.TransportError, httpx.StreamError, TimeoutError, OSError)


@dataclass(frozen=True)
class Answer:
    """A whole answer, read."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Response:
    """An answer whose body is still to be read (:meth:`chunks`)."""

    def __init__(self, raw: httpx.Response) -> None:
        self._raw = raw
        self.status = raw.status_code
        self.headers = raw.headers

    @property
    def location(self) -> str | None:
        """Where a redirect points (None when this is not one)."""
        return self.headers.get("location") if self.status in _REDIRECTS else None

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body, decoded as its Content-Encoding says, in chunks of up to *size* bytes."""
        try:
            async for chunk in self._raw.aiter_bytes(size):
                yield chunk
        except _UNANSWERED as exc:
            raise HttpUnanswered.of(exc) from None


class HttpClient:
    """Requests to one kind of server: at most *connections* at once, each network step
    (connect, read, write) given *timeout* seconds, our user agent on every request.

    *transport* is a seam for tests (httpx's own transports); by default httpx's.
    """

    def __init__(self, *, timeout: float, connections: int, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, pool=None),  # waiting for a free connection is not a fault
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": USER_AGENT},
            cookies=_NO_COOKIES,
            follow_redirects=False,
            trust_env=True,
            transport=transport,
            verify=_tls_context(),
        )

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        within: float | None = None,
    ) -> AsyncIterator[Response]:
        """Send one request; yield the answer with its body unread (the whole exchange *within*
        that many seconds, when given). Raises HttpUnanswered."""
        try:
            with anyio.fail_after(within) if within is not None else contextlib.nullcontext():
                request = self._client.build_request(method, url, headers=headers, content=content)
                raw = await self._client.send(request, stream=True)
                try:
                    yield Response(raw)
                finally:
                    await raw.aclose()
        except _UNANSWERED as exc:
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
        async with self.open(method, url, headers=headers, content=data, within=within) as response:
            body = bytearray()
            async for chunk in response.chunks(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    break
            return Answer(response.status, response.headers, bytes(body))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings every client shares: httpx's own (its trust store, ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``), made once, as httpx advises: loading a trust store costs tens of
    milliseconds of CPU each time."""
    return httpx.create_ssl_context(trust_env=True)


# A jar whose policy accepts no cookie from any domain: httpx keeps none, so sends none.
_NO_COOKIES = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
