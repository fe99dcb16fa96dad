"""Streaming download of one recording, verified before anyone may store it.

A download is accepted only when every check passes: the link's host is allowed (on every
redirect hop too), the status is 200, the bytes received match ``Content-Length``, the body
stays under ``download.max_bytes``, the first bytes are audio, and a WAV's own RIFF and chunk
sizes fit the bytes received (which catches a chunked body cut off without any length).
SHA-256 is computed while streaming. Bodies go to a spooled temporary file: small ones stay in
memory, large ones roll over to disk, so memory does not grow with recording size.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

import structlog

from archiver.core.audio import SNIFF_BYTES, AudioFormat, AudioInfo, NotAudio, check_wav, sniff
from archiver.errors import RecordingRejected, RecordingUnavailable, SpoolError
from archiver.retry import RetryPolicy, retry_after_seconds
from archiver.source.http import HttpClient, HttpUnanswered, Response

log = structlog.get_logger("archiver.source.fetch")

# A 404 means "not there (yet)": a few quick tries, then the call is parked or, past
# download.missing_after, records it missing. Any other failure (5xx, 429, a cut-off or stalled
# body, an error page) is the server having a bad moment: try harder before giving up, so that
# a burst of faults does not turn a recording that exists into a "missing" one.
NOT_FOUND_TRIES = RetryPolicy(attempts=3, timeout=90.0, wait_initial=1.0, wait_max=5.0)
FLAKY_TRIES = RetryPolicy(attempts=10, timeout=180.0, wait_initial=0.5, wait_max=10.0)


class LinkPolicy:
    """Which recording links may be fetched.

    *allowed_hosts* holds ``host`` (any port), ``host:port``, or ``*.domain`` (any subdomain).
    Only ``http`` and ``https`` links without credentials in them are fetched.
    """

    def __init__(self, allowed_hosts: tuple[str, ...]) -> None:
        self._hosts = tuple(h.lower() for h in allowed_hosts)

    def refusal(self, url: str) -> str | None:
        """Why *url* may not be fetched, or None when it may."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "the link is not a valid URL"
        if parts.scheme not in ("http", "https"):
            return f"scheme {parts.scheme or '(none)'!r} is not allowed; only http and https"
        host = (parts.hostname or "").lower()
        if not host:
            return "the link has no host"
        if parts.username is not None or parts.password is not None:
            return "the link carries credentials"
        for allowed in self._hosts:
            name, _, allowed_port = allowed.partition(":")
            if allowed_port and str(port or (443 if parts.scheme == "https" else 80)) != allowed_port:
                continue
            if name.startswith("*."):
                if host.endswith(name[1:]) and host != name[2:]:
                    return None
            elif host == name:
                return None
        return f"host {host!r} is not in source.allowed_recording_hosts ({', '.join(self._hosts)})"


@dataclass
class Download:
    """A verified recording in a local buffer. Close it when done."""

    file: IO[bytes]
    size: int
    sha256: bytes
    format: AudioFormat
    audio: AudioInfo | None
    trailing_bytes: int
    url: str
    content_type: str | None

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Fetcher:
    """Downloads and verifies recordings. *http* must not follow redirects by itself."""

    def __init__(
        self,
        http: HttpClient,
        policy: LinkPolicy,
        *,
        max_bytes: int,
        spool_dir: Path | None = None,
        spool_memory: int = 1 << 20,
        retry: RetryPolicy | None = None,
        not_found_retry: RetryPolicy | None = None,
        max_redirects: int = 5,
    ) -> None:
        self._http = http
        self._policy = policy
        self._max_bytes = max_bytes
        self._spool_dir = spool_dir
        self._spool_memory = spool_memory
        self._retry = retry or FLAKY_TRIES
        self._not_found_retry = not_found_retry or NOT_FOUND_TRIES
        self._max_redirects = max_redirects

    async def fetch(self, url: str) -> Download:
        """Download *url*, retrying failures that may pass (404s fewer times than the rest).

        Raises RecordingRejected (policy: never retry), RecordingUnavailable (after the
        tries), or SpoolError (the local buffer failed).
        """
        try:  # most links serve at the first try: the retry machinery is set up only for the others
            return await self._fetch_once(url)
        except RecordingUnavailable as exc:
            failure: RecordingUnavailable | None = exc
        async for not_found in self._not_found_retry.context(on=_is_not_found):
            with not_found:
                async for flaky in self._retry.context(on=_is_flaky):
                    with flaky:
                        if failure is not None:  # the first try's failure is the first attempt's: wait, then again
                            first, failure = failure, None
                            raise first
                        return await self._fetch_once(url)
        raise AssertionError("unreachable")  # pragma: no cover

    async def peek(self, url: str, size: int = SNIFF_BYTES) -> bytes:
        """The first *size* bytes *url* serves (redirects checked as for a download), for ``check``.

        Raises RecordingRejected when policy refuses the link, RecordingUnavailable otherwise.
        """
        current = url
        for _hop in range(self._max_redirects + 1):
            reason = self._policy.refusal(current)
            if reason is not None:
                raise RecordingRejected(f"refused to fetch the recording link: {reason}", kind="host_not_allowed")
            try:
                async with self._http.open("GET", current, headers={"Range": f"bytes=0-{size - 1}"}) as response:
                    if response.location is not None:
                        current = urljoin(current, response.location)
                        continue
                    if response.status not in (200, 206):
                        raise RecordingUnavailable(f"HTTP {response.status}", kind="http_error")
                    head = b""
                    async for chunk in response.chunks(size):
                        head += chunk
                        if len(head) >= size:
                            break
                    return head[:size]
            except HttpUnanswered as exc:
                raise RecordingUnavailable(f"could not connect: {exc.name}", kind="connection") from None
        raise RecordingUnavailable(f"more than {self._max_redirects} redirects", kind="redirect_loop")

    async def _fetch_once(self, url: str) -> Download:
        current = url
        for _hop in range(self._max_redirects + 1):
            reason = self._policy.refusal(current)
            if reason is not None:
                kind = "host_not_allowed" if current == url else "redirect_not_allowed"
                raise RecordingRejected(f"refused to fetch the recording link: {reason}", kind=kind)
            try:
                async with self._http.open("GET", current, headers={"Accept-Encoding": "identity"}) as response:
                    if response.location is not None:
                        current = urljoin(current, response.location)
                        continue
                    return await self._receive(current, response)
            except HttpUnanswered as exc:  # the body's own failures are told apart in _stream
                if exc.timed_out:
                    raise RecordingUnavailable("the recording server did not answer in time", kind="timeout") from None
                raise RecordingUnavailable(f"could not connect: {exc.name}", kind="connection") from None
        raise RecordingUnavailable(f"more than {self._max_redirects} redirects", kind="redirect_loop")

    async def _receive(self, url: str, response: Response) -> Download:
        status = response.status
        if status in (404, 410):
            raise RecordingUnavailable(f"HTTP {status}: not there (yet)", kind="not_found", http_status=status)
        if status != 200:
            raise RecordingUnavailable(
                f"HTTP {status}",
                kind="http_error",
                http_status=status,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        declared = _content_length(response)
        if declared is not None and declared > self._max_bytes:
            raise RecordingRejected(
                f"Content-Length {declared} is over download.max_bytes ({self._max_bytes})", kind="too_large"
            )
        return await self.take(
            _body(response),
            url=url,
            declared=declared,
            content_type=response.headers.get("content-type"),
            http_status=status,
        )

    async def take(
        self,
        chunks: AsyncIterator[bytes],
        *,
        url: str,
        declared: int | None = None,
        content_type: str | None = None,
        http_status: int | None = None,
    ) -> Download:
        """*chunks* (a body from the link, or the archive's own copy) into a local buffer, hashed
        and verified as a recording: the size cap, *declared* (Content-Length) against what
        arrived, the magic bytes, a WAV's own sizes.

        Raises RecordingRejected (past the cap), RecordingUnavailable (not a whole recording),
        SpoolError (the buffer failed), or whatever *chunks* raises.
        """
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by Download.close
            max_size=self._spool_memory, dir=str(self._spool_dir) if self._spool_dir else None
        )
        try:
            size, digest, head = await self._spool(chunks, spool)
            if declared is not None and size != declared:
                raise RecordingUnavailable(
                    f"Content-Length says {declared} bytes but {size} arrived",
                    kind="short_body",
                )
            try:
                fmt = sniff(head)
            except NotAudio as exc:
                raise RecordingUnavailable(f"the body is {exc}", kind="not_audio", http_status=http_status) from None
            info, trailing = None, 0
            if fmt == "wav":
                try:
                    wav = check_wav(spool, size)
                except ValueError as exc:
                    raise RecordingUnavailable(str(exc), kind="truncated") from None
                info, trailing = wav.info, wav.trailing_bytes
            spool.seek(0)
            return Download(
                file=spool,
                size=size,
                sha256=digest,
                format=fmt,
                audio=info,
                trailing_bytes=trailing,
                url=url,
                content_type=content_type,
            )
        except BaseException:
            spool.close()
            raise

    async def _spool(self, chunks: AsyncIterator[bytes], spool: IO[bytes]) -> tuple[int, bytes, bytes]:
        """Write *chunks* to *spool*: (size, SHA-256, the first bytes)."""
        hasher = hashlib.sha256()
        head = b""
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self._max_bytes:
                raise RecordingRejected(
                    f"the body grew past download.max_bytes ({self._max_bytes}); cut off", kind="too_large"
                )
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            hasher.update(chunk)
            try:
                spool.write(chunk)
            except OSError as exc:
                where = str(self._spool_dir or tempfile.gettempdir())
                log.error("spool.failed", spool_dir=where, error=exc.strerror, errno=exc.errno)
                raise SpoolError(f"cannot buffer the download in {where}: {exc.strerror}") from None
        return size, hasher.digest(), head


async def _body(response: Response, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
    """A link's body; its failures as RecordingUnavailable, telling a stall from a cut."""
    received = 0
    try:
        async for chunk in response.chunks(chunk_size):
            received += len(chunk)
            yield chunk
    except HttpUnanswered as exc:
        if exc.timed_out:
            raise RecordingUnavailable(f"the body stalled after {received} bytes", kind="stalled") from None
        raise RecordingUnavailable(
            f"the body was cut off after {received} bytes ({exc.name})", kind="cut_off"
        ) from None


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, RecordingUnavailable) and exc.kind == "not_found"


def _is_flaky(exc: Exception) -> bool | float:
    if isinstance(exc, RecordingUnavailable) and exc.kind != "not_found":
        return exc.retry_after if exc.retry_after is not None else True
    return False


def _content_length(response: Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or response.headers.get("content-encoding", "identity") != "identity":
        return None
    try:
        return int(value)
    except ValueError:
        return None
