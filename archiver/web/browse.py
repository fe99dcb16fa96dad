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
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import date
from zoneinfo import ZoneInfo

import anyio
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from archiver.audit import bundle
from archiver.audit.access import AccessTrail
from archiver.audit.catalog import DIRECTIONS, CallFiles, Catalog, Query, parse_statuses
from archiver.audit.evidence import examine
from archiver.core import seal
from archiver.core.identity import CALL_ID_RE
from archiver.core.windows import parse_date_argument
from archiver.errors import CallError, ObjectInColdStorage, TransientError
from archiver.store import Store
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, list_day
from archiver.store.seals import ChainReader
from archiver.web import pages
from archiver.web.login import Login, Refused

log = structlog.get_logger("archiver.web.browse")

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": pages.CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_ACCESS = re.compile(r"^/calls/(?P<call_id>[^/]+)(?:/(?P<what>audio|files|evidence\.zip)(?:/(?P<name>[^/]+))?)?$")


class Browser:
    """The web application over *store*'s archive under *prefix*."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        tz: ZoneInfo,
        *,
        country_code: str = "84",
        concurrency: int = 8,
        login: Login | None = None,
        trail: AccessTrail | None = None,
    ) -> None:
        self._store = store
        self._login = login
        self._trail = trail
        self._prefix = prefix
        self._tz = tz
        self._country_code = country_code
        self._catalog = Catalog(store, prefix, tz, concurrency=concurrency)
        self._seals = ChainReader(store, prefix, concurrency=concurrency)
        self._seals_lock = anyio.Lock()
        self._days_of: dict[str, date] = {}  # call id -> its day, as pages have shown it
        self.allowed_hosts: set[str] = set()

    def app(self) -> Starlette:
        routes = [
            Route("/", self.search),
            Route("/days", self.days),
            Route("/days/{day}", self.day),
            Route("/calls/{call_id}", self.call),
            Route("/calls/{call_id}/audio", self.audio),
            Route("/calls/{call_id}/files/{name}", self.file),
            Route("/calls/{call_id}/evidence.zip", self.evidence),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._guard)],
            exception_handlers={HTTPException: _error_page},
        )

    def listen_on(self, host: str, port: int) -> None:
        """Answer only requests addressed to *host*:*port* (and its loopback names)."""
        shown = f"[{host}]" if ":" in host else host
        self.allowed_hosts = {f"{shown}:{port}".lower()}
        if host in ("127.0.0.1", "::1", "localhost"):
            self.allowed_hosts |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}

    async def _guard(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _html(405, pages.message_page("Read only", "This archive browser only reads."))
        if self.allowed_hosts and request.headers.get("host", "").lower() not in self.allowed_hosts:
            return _html(421, pages.message_page("Wrong host", "Open this browser at the address it listens on."))
        remote = request.client.host if request.client else ""
        user = None
        if self._login is not None:
            try:
                user = await self._login.user(remote, dict(request.headers))
            except Refused as refused:
                denied = _html(refused.status, pages.message_page("Sign in", str(refused)))
                if refused.status == 401:
                    denied.headers["WWW-Authenticate"] = 'Basic realm="call recordings archive", charset="UTF-8"'
                denied.headers.update(_SECURITY_HEADERS)
                return denied
        try:
            response = await call_next(request)
        except (TransientError, CallError) as exc:
            log.warning("browse.store_failed", path=request.url.path, error=str(exc))
            return _html(502, pages.message_page("The archive did not answer", str(exc)))
        response.headers.update(_SECURITY_HEADERS)
        self._log_access(request, response, user, remote)
        return response

    def _log_access(self, request: Request, response: Response, user: str | None, remote: str) -> None:
        """A ``browse.access`` line for each call page, play and file served: a play once (its first
        byte asked for), not once per Range request."""
        match = _ACCESS.match(request.url.path)
        if match is None or response.status_code not in (200, 206) or request.method != "GET":
            return
        what = match.group("what")
        if what == "audio":
            ranged = request.headers.get("range", "")
            if ranged and not ranged.replace(" ", "").startswith("bytes=0-"):
                return
            action = "play"
        else:
            action = {"files": "download", "evidence.zip": "evidence"}.get(what or "", "view")
        details = {"action": action, "call_id": match.group("call_id"), "file": match.group("name"), "remote": remote}
        if self._trail is not None:
            self._trail.record(user=user or "", via="browse", **details)
        else:
            log.info("browse.access", user=user, **details)

    # -- pages ---------------------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
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

    async def days(self, request: Request) -> Response:
        return _html(200, pages.days_page(await self._catalog.days()))

    async def day(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            raise HTTPException(404, "Days are written YYYY-MM-DD.") from None
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

    async def call(self, request: Request) -> Response:
        files = await self._files(request)
        chain = await self._current_chain()
        evidence = await examine(self._store, files, chain)
        current = evidence.current
        readable = current and current.status == "archived" and current.recording_key not in evidence.cold
        audio = f"/calls/{files.call_id}/audio" if readable else None
        return _html(200, pages.call_page(evidence, audio, chain.head))

    async def audio(self, request: Request) -> Response:
        files = await self._files(request)
        doc = json.loads(await self._store.read(files.current_key, SIDECAR_LIMIT))
        rec = doc.get("recording") if isinstance(doc, dict) else None
        if isinstance(rec, dict) and rec.get("status") == "erased":
            raise HTTPException(410, f"This call's recording was erased on {rec.get('erased_at')}: {rec.get('reason')}")
        key = rec.get("key") if isinstance(rec, dict) and rec.get("status") == "archived" else None
        if not isinstance(key, str) or key not in files.audio:
            raise HTTPException(404, "This call has no recording in the archive.")
        return await self._send(request, key)

    async def file(self, request: Request) -> Response:
        files = await self._files(request)
        name = request.path_params["name"]
        keys = {k.rsplit("/", 1)[-1]: k for k in [*files.records.values(), *files.audio]}
        if name not in keys:
            raise HTTPException(404, f"The call has no file {name}.")
        return await self._send(request, keys[name])

    async def evidence(self, request: Request) -> Response:
        """The call's evidence bundle: byte for byte what ``archiver export`` writes for it (spooled
        to disk past 16 MiB, then streamed)."""
        files = await self._files(request)
        chain = await self._current_chain()
        spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - closed by the body
        try:
            await bundle.export(self._store, self._prefix, [files], chain, spool)
        except ObjectInColdStorage as exc:
            spool.close()
            raise HTTPException(409, pages.cold_text(exc.storage_class, exc.key)) from None
        except BaseException:
            spool.close()
            raise
        size = spool.tell()
        spool.seek(0)

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await anyio.to_thread.run_sync(spool.read, 1 << 20):
                    yield chunk
            finally:
                spool.close()

        headers = {
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{files.call_id}-evidence.zip"',
        }
        return StreamingResponse(body(), media_type="application/zip", headers=headers)

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

    async def _files(self, request: Request) -> CallFiles:
        call_id = request.path_params["call_id"].lower()
        if not CALL_ID_RE.match(call_id):
            raise HTTPException(404, "That is not a call id.")
        near = [self._days_of[call_id]] if call_id in self._days_of else []
        with contextlib.suppress(ValueError):
            near.append(date.fromisoformat(request.query_params.get("day", "")))
        files = await self._catalog.locate(call_id, near=near)
        if files is None or not files.records:
            raise HTTPException(404, f"No call {call_id} in the archive.")
        self._days_of[call_id] = files.day
        return files

    async def _current_chain(self) -> seal.Chain:
        """The seal chain, with the seals written since it was last read."""
        async with self._seals_lock:
            await self._seals.read_newer()
            return self._seals.chain

    async def _send(self, request: Request, key: str) -> Response:
        """The object's bytes, or the range of them the request asks for."""
        info = await self._store.head(key)
        if info is None:
            raise HTTPException(404, "The object is not in the archive.")
        if info.cold:
            raise HTTPException(409, pages.cold_text(info.storage_class, key))
        size = info.size
        ext = key.rsplit(".", 1)[-1]
        kind = _AUDIO_TYPES.get(ext, "application/json" if ext == "json" else "application/octet-stream")
        start, end, status = 0, size, 200
        if request.headers.get("range"):
            wanted = _byte_range(request.headers["range"], size)
            if wanted is None:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **_SECURITY_HEADERS})
            (start, end), status = wanted, 206
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start), **_SECURITY_HEADERS}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        log.info("browse.sent", key=key, status=status, start=start, end=end, size=size)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=kind)
        body: AsyncIterator[bytes] = self._store.stream(key, start=start, end=end)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=kind)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``Range: bytes=…`` within *size* bytes; None
    when it cannot be served (416)."""
    found = _RANGE.match(header.strip())
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.group(1), found.group(2)
    if first == "":  # bytes=-N: the last N bytes
        return (max(0, size - int(last)), size) if int(last) > 0 else None
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    return (start, end) if start < size and start < end else None


def _html(status: int, body: bytes) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = "Not found" if exc.status_code == 404 else "Not allowed" if exc.status_code == 405 else "Error"
    return _html(exc.status_code, pages.message_page(title, exc.detail))
