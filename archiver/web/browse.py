"""``archiver browse``: a read-only web UI over the archive, for auditors.

One desk serves every source of the file; ``browse.scopes`` says which calls each user sees, and
anything outside a user's scope answers as a call that does not exist would (404). It only reads
the bucket (GET and HEAD), and writes the access trail. Pages carry no script and load nothing
from elsewhere; :mod:`archiver.web.guard` stands in front of every route.

- ``/``: search, with the filters of ``archiver find``;
- ``/days``: the archive at a glance (the seal chain's head, the latest day closed, the access
  trail's last write, and a calendar of every day with its figures); ``/days/{YYYY-MM-DD}``: one
  day's figures, manifests and calls;
- ``/calls/{call_id}``: one call, checked when the page is asked for (every byte re-read);
- ``/calls/{call_id}/audio``: the current recording's stored bytes, with HTTP Range support (an
  encrypted one decrypted on the fly, with the archive's identity);
- ``/calls/{call_id}/files/{name}``: any of that call's objects as stored;
- ``/calls/{call_id}/evidence.zip``: the bundle ``archiver export`` writes.

With several sources, links carry ``?source=NAME``. Each call page, play (as
:mod:`archiver.web.ranges` defines it), file and bundle served is an access event in the trail
of the call's source, with the user, the scope that let them see it, and the address.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import date

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from archiver.audit.access import last_trail_write
from archiver.audit.catalog import DIRECTIONS, CallFiles, Found, Query, parse_statuses
from archiver.audit.evidence import examine
from archiver.core.clock import Clock, SystemClock
from archiver.core.dayfiles import CallEntry
from archiver.core.identity import CALL_ID_RE
from archiver.core.windows import parse_date_argument
from archiver.errors import CallError, TransientError
from archiver.store.listing import MANIFEST_LIMIT, SIDECAR_LIMIT, list_day
from archiver.web import calendar, pages
from archiver.web.delivery import Delivery
from archiver.web.desk import Desk
from archiver.web.guard import Guard, Hosts
from archiver.web.login import Identity, Login
from archiver.web.ranges import Plays
from archiver.web.scopes import Scope, Scopes

log = structlog.get_logger("archiver.web.browse")


class Browser:
    """The web application over *desks* (one per source, in the file's order).

    *scopes*: who sees which source (None: everyone sees every source); *clock* the wall clock
    (ages, ``today``); *monotonic* seconds for the plays' sessions.
    """

    def __init__(
        self,
        desks: Sequence[Desk],
        *,
        scopes: Scopes | None = None,
        login: Login | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        tls: bool = False,
    ) -> None:
        self._desks = list(desks)
        self._scopes = scopes or Scopes(None, [d.name for d in desks])
        self._scoped = scopes is not None
        self._many = len(self._desks) > 1
        self._login = login
        self._clock = clock or SystemClock()
        self._tls = tls
        self._plays = Plays(monotonic)
        self._delivery = Delivery()
        self._hosts: Hosts | None = None

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
        guard = Middleware(Guard, login=self._login, hosts=lambda: self._hosts, tls=self._tls)
        return Starlette(
            routes=routes,
            middleware=[guard],
            exception_handlers={
                HTTPException: _error_page,
                TransientError: _store_failed,
                CallError: _store_failed,
            },
        )

    def listen_on(self, host: str, port: int) -> None:
        """Answer only requests addressed to *host*:*port* (see :class:`~archiver.web.guard.Hosts`)."""
        self._hosts = Hosts(host, port, tls=self._tls)

    async def warm(self) -> None:
        """Read every day's summary once, before the first auditor asks for the calendar."""
        for desk in self._desks:
            try:
                await desk.daybook.refresh()
            except (TransientError, CallError) as exc:
                log.warning("browse.warm_failed", source=desk.name, error=str(exc))

    # -- who sees what -------------------------------------------------------------------------

    def _identity(self, request: Request) -> Identity | None:
        identity = getattr(request.state, "identity", None)
        return identity if isinstance(identity, Identity) else None

    def _scope(self, request: Request) -> Scope:
        identity = self._identity(request)
        return self._scopes.of(identity.name if identity else None, identity.groups if identity else ())

    def _visible(self, request: Request) -> list[Desk]:
        scope = self._scope(request)
        return [d for d in self._desks if scope.sees_source(d.name)]

    def _desk(self, request: Request) -> Desk:
        """The source a page is about (``?source=``, default the first the user sees); 404 outside
        the user's scope."""
        visible = self._visible(request)
        wanted = request.query_params.get("source")
        chosen = [d for d in visible if d.name == wanted] if wanted else visible[:1]
        if not chosen:
            raise HTTPException(404, "No such source in the archive.")
        return chosen[0]

    def _page(self, request: Request, status: int, body: bytes) -> HTMLResponse:
        """A page, saying who is signed in and what they see."""
        identity = self._identity(request)
        if identity is not None:
            sees = ", ".join(self._scope(request).describe(d.name) or d.name for d in self._visible(request))
            body = pages.signed_in(body, identity.name, sees or "nothing")
        return _html(status, body)

    def _named(self, desk: Desk) -> str | None:
        """The source's name as links carry it (None: the file's only source)."""
        return desk.name if self._many else None

    # -- pages ---------------------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
        visible = self._visible(request)
        form = pages.search_form(params, [d.name for d in visible])
        if not params or params.keys() <= {"source"}:
            intro = "<p>Find a call by a number in any form (+84 986…, 0986…), an extension, a time range.</p>"
            return self._page(request, 200, pages.page("Call recordings", form + intro))
        desks = [d for d in visible if d.name == params["source"]] if "source" in params else visible
        if not desks:
            raise HTTPException(404, "No such source in the archive.")
        scope = self._scope(request)
        found: list[tuple[str | None, Found]] = []
        for desk in desks:
            try:
                query = self._query(params, desk)
            except ValueError as exc:
                return self._page(
                    request, 400, pages.page("Call recordings", form + f'<p class="bad">{pages.h(exc)}</p>')
                )
            for f in await desk.catalog.find(query):
                if scope.sees(desk.name, f.entry):
                    desk.shown(f.entry.call_id, f.day)
                    found.append((self._named(desk), f))
        found.sort(key=lambda sf: (sf[1].entry.start, sf[1].entry.call_id))
        return self._page(request, 200, pages.page("Call recordings", form + pages.call_rows(found)))

    async def days(self, request: Request) -> Response:
        desk = self._desk(request)
        chain = await desk.daybook.refresh()
        summaries = desk.daybook.summaries
        extensions = self._scope(request).sources.get(desk.name)
        now = self._clock.now()
        written = await last_trail_write(desk.store, desk.prefix)
        own = desk.trail.last_written if desk.trail else None
        head_seal = chain.seals.get(chain.length)
        strip = calendar.Strip(
            head=chain.head,
            head_sealed_at=head_seal[0].sealed_at if head_seal else None,
            chain_problems=len(chain.problems),
            latest_closed=max((d for d, s in summaries.items() if s.closed), default=None),
            trail_written=max((t for t in (written, own) if t is not None), default=None),
            trail_pending=desk.trail.pending if desk.trail else 0,
            now=now,
        )
        title = "The archive at a glance" + (f": {desk.name}" if self._many else "")
        body = (
            pages.source_nav([d.name for d in self._visible(request)], desk.name, "/days")
            + calendar.strip(strip)
            + calendar.calendar(summaries, self._named(desk), extensions, now.astimezone(desk.tz).date())
        )
        return self._page(request, 200, pages.page(title, body))

    async def day(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            raise HTTPException(404, "Days are written YYYY-MM-DD.") from None
        desk = self._desk(request)
        scope = self._scope(request)
        extensions = scope.sources.get(desk.name)
        chain = await desk.chain()
        summary = await desk.daybook.day(day, chain)
        listing = await list_day(desk.store, desk.prefix, day)
        found = [f for f in await desk.catalog.day_calls(day, listing) if scope.sees(desk.name, f.entry)]
        for f in found:
            desk.shown(f.entry.call_id, f.day)
        manifests = []
        for key in listing.manifests.values():
            digest = hashlib.sha256(await desk.store.read(key, MANIFEST_LIMIT)).hexdigest()
            manifests.append((key, digest, chain.sealed_by(key, digest)))
        return self._page(
            request,
            200,
            pages.day_page(
                day,
                self._named(desk),
                calendar.day_summary(summary, extensions),
                sorted(found, key=lambda f: f.entry.start),
                manifests,
            ),
        )

    async def call(self, request: Request) -> Response:
        desk, files = await self._files(request)
        chain = await desk.chain()
        evidence = await examine(desk.store, files, chain, decrypter=desk.decrypter)
        current = evidence.current
        readable = current and current.status == "archived" and current.recording_key not in evidence.cold
        sealed = current is not None and current.recording_key in evidence.not_decrypted
        audio = f"/calls/{files.call_id}/audio{pages.where(self._named(desk), day=files.day.isoformat())}"
        note = (
            f"This recording is encrypted; to play it, browse needs the archive's identity: {desk.why_not}."
            if sealed
            else None
        )
        page = pages.call_page(
            evidence,
            self._named(desk),
            audio if readable and not sealed else None,
            chain.head,
            note=note if sealed else None,
        )
        response = self._page(request, 200, page)
        if request.method == "GET":
            self._record(request, desk, files.call_id, "view")
        return response

    async def audio(self, request: Request) -> Response:
        desk, files = await self._files(request)
        doc = json.loads(await desk.store.read(files.current_key, SIDECAR_LIMIT))
        rec = doc.get("recording") if isinstance(doc, dict) else None
        if isinstance(rec, dict) and rec.get("status") == "erased":
            raise HTTPException(410, f"This call's recording was erased on {rec.get('erased_at')}: {rec.get('reason')}")
        key = rec.get("key") if isinstance(rec, dict) and rec.get("status") == "archived" else None
        if not isinstance(key, str) or key not in files.audio:
            raise HTTPException(404, "This call has no recording in the archive.")
        served = self._served(request, desk, files.call_id, key, "play")
        if isinstance(rec, dict) and isinstance(rec.get("encryption"), dict):
            return await self._delivery.decrypted(request, desk, rec, served)
        return await self._delivery.object(request, desk, key, served)

    async def file(self, request: Request) -> Response:
        desk, files = await self._files(request)
        name = request.path_params["name"]
        keys = {k.rsplit("/", 1)[-1]: k for k in [*files.records.values(), *files.audio]}
        if name not in keys:
            raise HTTPException(404, f"The call has no file {name}.")
        served = self._served(request, desk, files.call_id, keys[name], "download")
        return await self._delivery.object(request, desk, keys[name], served)

    async def evidence(self, request: Request) -> Response:
        """The call's evidence bundle: byte for byte what ``archiver export`` writes for it."""
        desk, files = await self._files(request)
        return await self._delivery.bundle(
            request, desk, files, self._who(request), lambda: self._record(request, desk, files.call_id, "evidence")
        )

    # -- helpers -------------------------------------------------------------------------------

    def _query(self, params: dict[str, str], desk: Desk) -> Query:
        since = parse_date_argument(params["since"], desk.tz) if "since" in params else None
        until = parse_date_argument(params["until"], desk.tz) if "until" in params else None
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
            country_code=desk.country_code,
        )

    async def _files(self, request: Request) -> tuple[Desk, CallFiles]:
        """The call a URL names, in a source the user sees (``?source=`` first), through its
        canonical (lower-case) id; 404, the same for every reason, otherwise."""
        call_id = request.path_params["call_id"].lower()
        missing = HTTPException(404, f"No call {call_id} in the archive.")
        if not CALL_ID_RE.match(call_id):
            raise HTTPException(404, "That is not a call id.")
        near = []
        with contextlib.suppress(ValueError):
            near.append(date.fromisoformat(request.query_params.get("day", "")))
        wanted = request.query_params.get("source")
        scope = self._scope(request)
        for desk in self._visible(request):
            if wanted and desk.name != wanted:
                continue
            files = await desk.locate(call_id, near)
            if files is None:
                continue
            if scope.narrowed(desk.name):
                try:
                    entry = CallEntry.from_sidecar(call_id, await desk.store.read(files.current_key, SIDECAR_LIMIT))
                except ValueError:  # a record that does not parse shows no extension: not in the scope
                    raise missing from None
                if not scope.sees(desk.name, entry):
                    raise missing
            return desk, files
        raise missing

    def _who(self, request: Request) -> str:
        identity = self._identity(request)
        if identity is not None:
            return identity.name
        return request.client.host if request.client else ""

    def _record(self, request: Request, desk: Desk, call_id: str, action: str, file: str | None = None) -> None:
        """An access event in the trail of *desk*'s source."""
        identity = self._identity(request)
        user = identity.name if identity else ""
        remote = request.client.host if request.client else ""
        source = desk.name if self._many else None
        scope = self._scope(request).describe(desk.name) if self._scoped else None
        if desk.trail is not None:
            desk.trail.record(
                user=user,
                action=action,
                call_id=call_id,
                remote=remote,
                via="browse",
                file=file,
                source=source,
                scope=scope,
            )
        else:
            log.info(
                "browse.access", user=user, action=action, call_id=call_id, file=file, remote=remote, source=source
            )

    def _served(
        self, request: Request, desk: Desk, call_id: str, key: str, action: str
    ) -> Callable[[int, int, int], None]:
        """What is recorded of bytes served: every download, and a play as :mod:`archiver.web.ranges`
        counts it."""

        def served(start: int, end: int, size: int) -> None:
            if action == "download":
                self._record(request, desk, call_id, "download", key.rsplit("/", 1)[-1])
            elif self._plays.served(self._who(request), key, size, start, end):
                self._record(request, desk, call_id, "play")

        return served


def _html(status: int, body: bytes) -> HTMLResponse:
    return HTMLResponse(body, status_code=status)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Not allowed", 410: "Erased", 429: "Too many at once"}
    response = _html(exc.status_code, pages.message_page(titles.get(exc.status_code, "Error"), exc.detail))
    if exc.status_code == 429:
        response.headers["Retry-After"] = "10"
    return response


async def _store_failed(request: Request, exc: Exception) -> Response:
    log.warning("browse.store_failed", path=request.url.path, error=str(exc))
    return _html(502, pages.message_page("The archive did not answer", str(exc)))
