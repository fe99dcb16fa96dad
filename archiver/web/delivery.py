"""Handing over a call's stored objects and its evidence bundle.

An object goes as stored, or the one range of it a request asks for (:mod:`archiver.web.ranges`);
a recording in cold storage is 409 with the command that brings it back. A bundle is made as
``archiver export`` makes it, spooled to disk past 1 MiB, then streamed: a user has at most two
being made at once (a third is 429), four are made at once in all (more wait their turn), and a
HEAD makes none.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Callable

import anyio
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archiver.audit import bundle
from archiver.audit.catalog import CallFiles
from archiver.errors import ObjectInColdStorage
from archiver.web import pages
from archiver.web.desk import Desk
from archiver.web.ranges import Unsatisfiable, served_range

log = structlog.get_logger("archiver.web.delivery")

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac"}
BUNDLES_PER_USER = 2  # evidence bundles one user may have made at once; a third is 429
BUNDLES_AT_ONCE = 4  # bundles made at once in all; more wait their turn
SPOOL_IN_MEMORY = 1 << 20  # bytes of a bundle kept in memory before it spills to disk


class Delivery:
    """Sends objects and bundles; tells the caller what it served, for the access trail."""

    def __init__(self) -> None:
        self._bundles_by_user: dict[str, int] = {}
        self._bundles = anyio.CapacityLimiter(BUNDLES_AT_ONCE)

    async def object(self, request: Request, desk: Desk, key: str, served: Callable[[int, int, int], None]) -> Response:
        """*key*'s bytes, or the range of them the request asks for; *served* (start, end, size)
        is called for a GET that yields bytes."""
        info = await desk.store.head(key)
        if info is None:
            raise HTTPException(404, "The object is not in the archive.")
        if info.cold:
            raise HTTPException(409, pages.cold_text(info.storage_class, key))
        size = info.size
        ext = key.rsplit(".", 1)[-1]
        kind = _AUDIO_TYPES.get(ext, "application/json" if ext == "json" else "application/octet-stream")
        try:
            wanted = served_range(request.headers.get("range"), size, if_range=request.headers.get("if-range"))
        except Unsatisfiable:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        (start, end), status = (wanted, 206) if wanted else ((0, size), 200)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        log.info("browse.sent", key=key, status=status, start=start, end=end, size=size)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=kind)
        served(start, end, size)
        body: AsyncIterator[bytes] = desk.store.stream(key, start=start, end=end)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=kind)

    async def bundle(
        self, request: Request, desk: Desk, files: CallFiles, who: str, served: Callable[[], None]
    ) -> Response:
        """The call's bundle for *who*; *served* is called when one is handed over."""
        headers = {"Content-Disposition": f'attachment; filename="{files.call_id}-evidence.zip"'}
        if request.method == "HEAD":
            response = Response(status_code=200, headers=headers, media_type="application/zip")
            del response.headers["content-length"]  # not known without making the bundle
            return response
        if self._bundles_by_user.get(who, 0) >= BUNDLES_PER_USER:
            raise HTTPException(429, f"You have {BUNDLES_PER_USER} evidence bundles being made: wait for them.")
        self._bundles_by_user[who] = self._bundles_by_user.get(who, 0) + 1
        try:
            spool, size = await self._make(desk, files)
        finally:
            self._bundles_by_user[who] -= 1
            if not self._bundles_by_user[who]:
                del self._bundles_by_user[who]

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await anyio.to_thread.run_sync(spool.read, 1 << 20):
                    yield chunk
            finally:
                spool.close()

        served()
        return StreamingResponse(body(), media_type="application/zip", headers={**headers, "Content-Length": str(size)})

    async def _make(self, desk: Desk, files: CallFiles) -> tuple[tempfile.SpooledTemporaryFile[bytes], int]:
        async with self._bundles:
            began = time.monotonic()
            chain = await desk.chain()
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the body
            try:
                await bundle.export(desk.store, desk.prefix, [files], chain, spool)
            except ObjectInColdStorage as exc:
                spool.close()
                raise HTTPException(409, pages.cold_text(exc.storage_class, exc.key)) from None
            except BaseException:
                spool.close()
                raise
            size = spool.tell()
            spool.seek(0)
            seconds = round(time.monotonic() - began, 3)
            log.info("browse.bundle_built", call_id=files.call_id, size=size, seconds=seconds)
            return spool, size
