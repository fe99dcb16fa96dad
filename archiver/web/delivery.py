"""Handing over a call's stored objects and its evidence bundle.

An object goes as stored, or the one range of it a request asks for (:mod:`archiver.web.ranges`);
a recording in cold storage is 409 with the command that brings it back. An encrypted recording
is played decrypted on the fly: the range asked for is of its plaintext, decrypted from its start
in a worker thread and handed to the response a piece at a time (a few pieces in memory, none on
disk); without the archive's identity, or with its key gone, it is 409 saying why. A bundle is made as
``archiver export`` makes it, spooled to disk past 1 MiB, then streamed: a user has at most two
being made at once (a third is 429), four are made at once in all (more wait their turn), and a
HEAD makes none.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.from_thread
import structlog
from anyio.streams.memory import MemoryObjectSendStream
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Send

from archiver.audit import bundle
from archiver.audit.catalog import CallFiles
from archiver.core.outcome import Encrypted
from archiver.errors import ConfigError, KeyObjectError, ObjectInColdStorage
from archiver.store import ObjectInfo
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
        info = await _readable(desk, key)
        ext = key.rsplit(".", 1)[-1]
        kind = _AUDIO_TYPES.get(ext, "application/json" if ext == "json" else "application/octet-stream")

        def body(start: int, end: int, status: int, headers: dict[str, str]) -> Response:
            chunks: AsyncIterator[bytes] = desk.store.stream(key, start=start, end=end)
            return StreamingResponse(chunks, status_code=status, headers=headers, media_type=kind)

        return _ranged(request, key, info.size, kind, served, body)

    async def decrypted(
        self, request: Request, desk: Desk, rec: dict[str, Any], served: Callable[[int, int, int], None]
    ) -> Response:
        """The encrypted recording *rec* names, decrypted: the whole of its plaintext, or the range
        of it the request asks for; *served* as for :meth:`object`, in the plaintext's bytes."""
        stated = Encrypted.of(rec)
        key = str(rec.get("key"))
        if stated is None:
            raise HTTPException(404, "The record of this recording does not say how it was encrypted.")
        decrypter = desk.decrypter
        if decrypter is None:
            raise HTTPException(409, f"This recording is encrypted, and browse cannot decrypt it: {desk.why_not}.")
        await _readable(desk, key)
        try:
            opened = await decrypter.key_for(rec)
        except KeyObjectError as exc:
            raise HTTPException(409, f"This recording cannot be decrypted: {exc}") from None
        kind = _AUDIO_TYPES.get(str(rec.get("format")), "application/octet-stream")

        def body(start: int, end: int, status: int, headers: dict[str, str]) -> Response:
            async def produce(sender: MemoryObjectSendStream[bytes]) -> None:
                def write(piece: bytes) -> None:
                    anyio.from_thread.run(sender.send, piece)

                await decrypter.decrypt(desk.store, rec, write, start=start, end=end, key=opened)

            return _Produced(produce, status_code=status, headers=headers, media_type=kind)

        return _ranged(request, key, stated.plaintext_size, kind, served, body)

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
                await bundle.export(
                    desk.store, desk.prefix, [files], chain, spool, decrypter=desk.decrypter, why_not=desk.why_not
                )
            except ObjectInColdStorage as exc:
                spool.close()
                raise HTTPException(409, pages.cold_text(exc.storage_class, exc.key)) from None
            except (ConfigError, KeyObjectError) as exc:  # no identity here, or a key gone
                spool.close()
                why = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
                raise HTTPException(
                    409, f"The bundle holds this call's audio decrypted, and it cannot be: {why}"
                ) from None
            except BaseException:
                spool.close()
                raise
            size = spool.tell()
            spool.seek(0)
            seconds = round(time.monotonic() - began, 3)
            log.info("browse.bundle_built", call_id=files.call_id, size=size, seconds=seconds)
            return spool, size


async def _readable(desk: Desk, key: str) -> ObjectInfo:
    """What the store knows of *key*; 404 when it is not there, 409 when it is in cold storage."""
    info = await desk.store.head(key)
    if info is None:
        raise HTTPException(404, "The object is not in the archive.")
    if info.cold:
        raise HTTPException(409, pages.cold_text(info.storage_class, key))
    return info


def _ranged(
    request: Request,
    key: str,
    size: int,
    kind: str,
    served: Callable[[int, int, int], None],
    body: Callable[[int, int, int, dict[str, str]], Response],
) -> Response:
    """The answer to a GET or HEAD of *size* bytes: all of them (200), the one range asked for
    (206), or none (416); *body* (start, end, status, headers) makes a GET's, after *served*."""
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
    return body(start, end, status, headers)


class _Produced(StreamingResponse):
    """A response whose body *produce* sends into a small buffer while the body is sent: the
    buffer holds a few pieces, so a slow client slows the producer, and memory stays flat."""

    def __init__(self, produce: Callable[[MemoryObjectSendStream[bytes]], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(_nothing(), **kwargs)
        self._produce = produce

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        sender, receiver = anyio.create_memory_object_stream[bytes](4)

        async def produce() -> None:
            async with sender:
                try:
                    await self._produce(sender)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the client went: the body is not wanted any more

        try:
            async with anyio.create_task_group() as tg, receiver:
                tg.start_soon(produce)
                async for chunk in receiver:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except BaseExceptionGroup as group:  # the client gone (OSError), or the body failing half-way
            first = group.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            log.warning("browse.body_failed", error=str(first))
            raise first from None
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - an empty async generator
