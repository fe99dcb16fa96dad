"""What every request to ``browse`` passes before it reaches a page: a plain ASGI middleware.

In order, a request is refused when

1. its method is not GET or HEAD (405: the desk only reads);
2. a header is longer than 8 KiB or all of them than 16 KiB (431), so nothing a client sends
   makes a long log line;
3. its ``Host`` is not the address browse listens on (421; see :meth:`Hosts.allows`), so a page
   elsewhere cannot reach the desk through DNS rebinding;
4. it asks for a call's page, audio, files or bundle from another site (403): a page elsewhere
   cannot make a signed-in auditor's browser fetch recordings, which would put false entries in
   the access trail. Browsers say where a request comes from in ``Sec-Fetch-Site`` (or at least
   ``Origin``); following a link to a call's page from elsewhere (a ticket, an email) is allowed;
5. it carries no acceptable login (401 asks for one, 403 refuses, 429 after failed sign-ins).

Every answer carries the security headers (a Content-Security-Policy that loads nothing from
elsewhere, no framing, no referrer, no caching). The user found is put in the request's state
(``request.state.identity``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from archiver.web import pages
from archiver.web.login import Identity, Login, Refused

log = structlog.get_logger("archiver.web.guard")

MAX_HEADER = 8 << 10
MAX_HEADERS = 16 << 10
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": pages.CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_SECURITY_RAW = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_CALL_PATH = re.compile(r"^/calls/[^/]+(?P<more>/.*)?$")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class Hosts:
    """Which ``Host`` values the desk answers.

    - With TLS, any: a browser speaks only to the name the certificate names, so a DNS-rebound
      name fails at the handshake.
    - On one address, that address with the port (on loopback also ``localhost``).
    - On every address (``0.0.0.0``, ``::``), the address the connection arrived at, with the port
      (on loopback also ``localhost``); a name needs TLS, or a proxy that passes the address on.
    """

    def __init__(self, host: str, port: int, *, tls: bool) -> None:
        self._host = host.strip("[]")
        self._port = port
        self._tls = tls
        try:
            self._wildcard = ipaddress.ip_address(self._host).is_unspecified
        except ValueError:
            self._wildcard = False

    def allows(self, host_header: str, local_address: str | None) -> bool:
        if self._tls:
            return True
        host = host_header.strip().lower()
        address = (local_address or "") if self._wildcard else self._host
        return host in self._forms(address)

    def _forms(self, address: str) -> set[str]:
        shown = f"[{address}]" if ":" in address else address
        names = {shown.lower()}
        if address == "localhost" or _is_loopback(address):
            names |= set(_LOOPBACK_NAMES)
        forms = {f"{name}:{self._port}" for name in names}
        if self._port == 80:
            forms |= names
        return forms


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Guard:
    """The middleware in front of the desk's routes (see the module's text)."""

    def __init__(self, app: ASGIApp, *, login: Login | None, hosts: Callable[[], Hosts | None], tls: bool) -> None:
        self._app = app
        self._login = login
        self._hosts = hosts
        self._scheme = "https" if tls else "http"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        refusal = await self._refusal(scope)
        if refusal is not None:
            status, title, text, headers = refusal
            await _answer(secured, status, title, text, headers)
            return
        await self._app(scope, receive, secured)

    async def _refusal(self, scope: Scope) -> tuple[int, str, str, dict[str, str]] | None:
        """Why the request is refused (status, title, text, headers), or None; puts the identity
        in the request's state."""
        if scope["method"] not in ("GET", "HEAD"):
            return 405, "Read only", "This archive browser only reads.", {"Allow": "GET, HEAD"}
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        if any(len(v) > MAX_HEADER for _, v in raw) or sum(len(k) + len(v) for k, v in raw) > MAX_HEADERS:
            return 431, "Request too large", "The request's headers are too long.", {}
        host = next((v.decode("latin-1") for k, v in raw if k == b"host"), "")
        hosts = self._hosts()
        local = scope.get("server")
        if hosts is not None and not hosts.allows(host, local[0] if local else None):
            return 421, "Wrong host", "Open this browser at the address it listens on.", {}
        remote = scope["client"][0] if scope.get("client") else ""
        if self._cross_site(scope, raw, host):
            log.warning("browse.cross_site_refused", path=scope["path"][:200], remote=remote)
            return 403, "Not from another site", "Open the archive's pages from the archive itself.", {}
        identity: Identity | None = None
        if self._login is not None:
            try:
                identity = await self._login.identify(remote, raw)
            except Refused as refused:
                headers = {}
                if refused.status == 401:
                    headers["WWW-Authenticate"] = 'Basic realm="call recordings archive", charset="UTF-8"'
                if refused.retry_after is not None:
                    headers["Retry-After"] = str(refused.retry_after)
                return refused.status, "Sign in", str(refused), headers
        scope.setdefault("state", {})["identity"] = identity
        return None

    def _cross_site(self, scope: Scope, raw: list[tuple[bytes, bytes]], host: str) -> bool:
        """Whether a request for a call's page, audio, files or bundle comes from another site."""
        found = _CALL_PATH.match(scope["path"])
        if found is None:
            return False
        headers = {
            k.decode("latin-1"): v.decode("latin-1").strip().lower()
            for k, v in raw
            if k.startswith((b"sec-fetch-", b"origin"))
        }
        site = headers.get("sec-fetch-site")
        if site is not None:
            if site in ("same-origin", "none"):
                return False
            followed = headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest") == "document"
            return not (followed and found.group("more") is None)
        origin = headers.get("origin")
        return origin is not None and origin != f"{self._scheme}://{host.strip().lower()}"


async def _answer(send: Send, status: int, title: str, text: str, headers: dict[str, str]) -> None:
    body = pages.message_page(title, text)
    raw = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in headers.items()],
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
