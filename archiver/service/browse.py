"""``archiver browse``: a read-only web UI over the archive, for auditors.

It only reads the bucket: GET and HEAD, nothing else. Pages carry no script and load nothing from
elsewhere (a Content-Security-Policy says so to the browser); a request whose Host is not the
address it listens on is refused, so a web page elsewhere cannot reach it through DNS rebinding.

- ``/``: search, with the filters of ``archiver find``;
- ``/days``, ``/days/{YYYY-MM-DD}``: the archive's days, and one day's calls and manifests;
- ``/calls/{call_id}``: one call, checked when the page is asked for (every byte re-read);
- ``/calls/{call_id}/audio``: the current recording's stored bytes, with HTTP Range support;
- ``/calls/{call_id}/files/{name}``: any of that call's objects as stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import date
from zoneinfo import ZoneInfo

import anyio
import structlog
from aiohttp import web

from archiver.audit.catalog import DIRECTIONS, CallFiles, Catalog, Query, parse_statuses
from archiver.audit.evidence import examine
from archiver.core import seal
from archiver.core.identity import CALL_ID_RE
from archiver.core.windows import parse_date_argument
from archiver.errors import CallError, TransientError
from archiver.service import pages
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, list_day
from archiver.store.seals import ChainReader

log = structlog.get_logger("archiver.service.browse")

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": pages.CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Browser:
    """The web application over *store*'s archive under *prefix*."""

    def __init__(
        self, store: Store, prefix: str, tz: ZoneInfo, *, country_code: str = "84", concurrency: int = 8
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._tz = tz
        self._country_code = country_code
        self._catalog = Catalog(store, prefix, tz, concurrency=concurrency)
        self._seals = ChainReader(store, prefix, concurrency=concurrency)
        self._seals_lock = anyio.Lock()
        self._days_of: dict[str, date] = {}  # call id -> its day, as pages have shown it
        self.allowed_hosts: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self.search)
        app.router.add_get("/days", self.days)
        app.router.add_get("/days/{day}", self.day)
        app.router.add_get("/calls/{call_id}", self.call)
        app.router.add_get("/calls/{call_id}/audio", self.audio)
        app.router.add_get("/calls/{call_id}/files/{name}", self.file)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _html(405, pages.message_page("Read only", "This archive browser only reads."))
        if self.allowed_hosts and request.host.lower() not in self.allowed_hosts:
            return _html(421, pages.message_page("Wrong host", "Open this browser at the address it listens on."))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _html(exc.status, pages.message_page(exc.reason, exc.text or exc.reason))
            raise
        except (TransientError, CallError) as exc:
            log.warning("browse.store_failed", path=request.path, error=str(exc))
            return _html(502, pages.message_page("The archive did not answer", str(exc)))
        response.headers.update(_SECURITY_HEADERS)
        return response

    # -- pages ---------------------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.StreamResponse:
        params = {k: v.strip() for k, v in request.query.items() if v.strip()}
        form = pages.search_form(params)
        if not params:
            intro = "<p>Find a call by a number in any form (+84 986…, 0986…), an extension, a time range.</p>"
            return _html(200, pages.page("Call recordings", form + intro))
        try:
            query = self._query(params)
        except ValueError as exc:
            return _html(400, pages.page("Call recordings", form + f'<p class="bad">{pages.h(exc)}</p>'))
        found = await self._catalog.find(query)
        for f in found:
            self._days_of[f.entry.call_id] = f.day
        return _html(200, pages.page("Call recordings", form + pages.call_rows(found)))

    async def days(self, request: web.Request) -> web.StreamResponse:
        return _html(200, pages.days_page(await self._catalog.days()))

    async def day(self, request: web.Request) -> web.StreamResponse:
        try:
            day = date.fromisoformat(request.match_info["day"])
        except ValueError:
            raise web.HTTPNotFound(text="Days are written YYYY-MM-DD.") from None
        listing = await list_day(self._store, self._prefix, day)
        found = await self._catalog.day_calls(day, listing)
        for f in found:
            self._days_of[f.entry.call_id] = f.day
        chain = await self._current_chain()
        manifests = []
        for key in listing.manifests.values():
            digest = hashlib.sha256(await self._store.read(key, MANIFEST_LIMIT)).hexdigest()
            manifests.append((key, digest, chain.sealed_by(key, digest)))
        return _html(200, pages.day_page(day, sorted(found, key=lambda f: f.entry.start), manifests))

    async def call(self, request: web.Request) -> web.StreamResponse:
        files = await self._files(request)
        chain = await self._current_chain()
        evidence = await examine(self._store, files, chain)
        current = evidence.current
        audio = f"/calls/{files.call_id}/audio" if current and current.status == "archived" else None
        return _html(200, pages.call_page(evidence, audio, chain.head))

    async def audio(self, request: web.Request) -> web.StreamResponse:
        files = await self._files(request)
        doc = json.loads(await self._store.read(files.current_key, SIDECAR_LIMIT))
        rec = doc.get("recording") if isinstance(doc, dict) else None
        key = rec.get("key") if isinstance(rec, dict) and rec.get("status") == "archived" else None
        if not isinstance(key, str) or key not in files.audio:
            raise web.HTTPNotFound(text="This call has no recording in the archive.")
        return await self._send(request, key)

    async def file(self, request: web.Request) -> web.StreamResponse:
        files = await self._files(request)
        name = request.match_info["name"]
        keys = {k.rsplit("/", 1)[-1]: k for k in [*files.records.values(), *files.audio]}
        if name not in keys:
            raise web.HTTPNotFound(text=f"The call has no file {name}.")
        return await self._send(request, keys[name])

    # -- helpers -------------------------------------------------------------------------------

    def _query(self, params: dict[str, str]) -> Query:
        since = parse_date_argument(params["since"], self._tz) if "since" in params else None
        until = parse_date_argument(params["until"], self._tz) if "until" in params else None
        if since and until and until <= since:
            raise ValueError("'Until' must be after 'From'")
        direction = params.get("direction")
        if direction and direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        return Query(
            number=params.get("number"),
            extension=params.get("extension"),
            direction=direction,
            statuses=parse_statuses(params["status"]) if "status" in params else None,
            since=since,
            until=until,
            country_code=self._country_code,
        )

    async def _files(self, request: web.Request) -> CallFiles:
        call_id = request.match_info["call_id"].lower()
        if not CALL_ID_RE.match(call_id):
            raise web.HTTPNotFound(text="That is not a call id.")
        near = [self._days_of[call_id]] if call_id in self._days_of else []
        with contextlib.suppress(ValueError):
            near.append(date.fromisoformat(request.query.get("day", "")))
        files = await self._catalog.locate(call_id, near=near)
        if files is None or not files.records:
            raise web.HTTPNotFound(text=f"No call {call_id} in the archive.")
        self._days_of[call_id] = files.day
        return files

    async def _current_chain(self) -> seal.Chain:
        """The seal chain, with the seals written since it was last read."""
        async with self._seals_lock:
            await self._seals.read_newer()
            return self._seals.chain

    async def _send(self, request: web.Request, key: str) -> web.StreamResponse:
        """The object's bytes, or the range of them the request asks for."""
        info = await self._store.head(key)
        if info is None:
            raise web.HTTPNotFound(text="The object is not in the archive.")
        size = info.size
        ext = key.rsplit(".", 1)[-1]
        kind = _AUDIO_TYPES.get(ext, "application/json" if ext == "json" else "application/octet-stream")
        start, end, status = 0, size, 200
        if request.headers.get("Range"):
            try:
                wanted = request.http_range
            except ValueError:
                wanted = None
            if wanted is None or (wanted.start is not None and wanted.start >= size):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}", **_SECURITY_HEADERS})
            start = wanted.start if wanted.start is not None else 0
            if start < 0:  # bytes=-N: the last N bytes
                start = max(0, size + start)
            end = min(size, wanted.stop) if wanted.stop is not None else size
            status = 206
        response = web.StreamResponse(status=status)
        response.content_type = kind
        response.content_length = end - start
        response.headers["Accept-Ranges"] = "bytes"
        response.headers.update(_SECURITY_HEADERS)
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        log.info("browse.sent", key=key, status=status, start=start, end=end, size=size)
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in self._store.stream(key, start=start, end=end):
                await response.write(chunk)
        await response.write_eof()
        return response


def _html(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="text/html", charset="utf-8", headers=_SECURITY_HEADERS)


async def serve(browser: Browser, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve *browser* on host:port until cancelled; *ready* gets its URL once it listens."""
    runner = web.AppRunner(browser.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server  # the one way aiohttp tells the port it bound
        bound = server.sockets[0].getsockname()[1] if server is not None else port  # type: ignore[attr-defined]
        shown = f"[{host}]" if ":" in host else host
        browser.allowed_hosts = {f"{shown}:{bound}".lower()}
        if host in ("127.0.0.1", "::1", "localhost"):
            browser.allowed_hosts |= {f"localhost:{bound}", f"127.0.0.1:{bound}", f"[::1]:{bound}"}
        ready(f"http://{shown}:{bound}/")
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
