"""The S3 requests of the archive's working path, sent with aiohttp and signed by :mod:`.sigv4`.

This is the hot path: two create-only PUTs per call (audio, then sidecar), and the listings,
reads and conditional writes of closing days, sealing and coordination. Through boto3 each
request costs ~2.4 ms of CPU (request model, event hooks, urllib3 in a worker thread), and
boto3's import and one client ~0.25 s before the first; this costs ~0.5 ms a request and
nothing to start. boto3 still does what is rare or long (multipart uploads, ``check``'s bucket
settings, version audits, and everything when the wire is off).

The payload hash signed for a recording is the SHA-256 the fetcher computed while streaming,
so the body is signed without a second pass over it, and ``x-amz-checksum-sha256`` makes the
server check the bytes it stored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from archiver.store.sigv4 import EMPTY_SHA256, Signer, encode_query

_CHUNK = 256 << 10
_CODE = re.compile(r"<Code>([^<]{0,200})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{0,2000})</Message>")
_MAX_ANSWER = 8 << 20  # a listing page of 1,000 long keys is ~300 KB


class WireRefused(Exception):
    """The server answered with an error: its status, S3 error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code or status}: {message}")
        self.status, self.code, self.message = status, code, message

    @property
    def absent(self) -> bool:
        """No such object (a missing bucket is not that: it is an error to report)."""
        return self.status == 404 and self.code != "NoSuchBucket"


class WireUnanswered(Exception):
    """The request got no (whole) answer: connection refused or reset, or a timeout."""


@dataclass(frozen=True)
class Listing:
    """One page of a listing: its keys, its folders (with a delimiter), and where the next starts."""

    keys: list[str]
    folders: list[str]
    next_token: str | None


class S3Wire:
    """The requests on one bucket, at *bucket_url* (``https://bucket.s3.region.amazonaws.com``
    or, path-style, ``http://endpoint/bucket``)."""

    def __init__(
        self,
        *,
        bucket_url: str,
        signer: Signer,
        connections: int = 16,
        timeout: float = 60.0,
        ca_bundle: str | None = None,
        proxy: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        parts = urlsplit(bucket_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._root = parts.path.rstrip("/")
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        # The Host header aiohttp sends (the port only when it is not the scheme's), signed as sent.
        self._host = parts.netloc.rsplit(":", 1)[0] if parts.port == default_port else parts.netloc
        self._secure = parts.scheme == "https"
        self._signer = signer
        self._session: aiohttp.ClientSession | None = None
        self._connections = connections
        self._ca_bundle = ca_bundle  # as botocore's (AWS_CA_BUNDLE, ca_bundle in the AWS config)
        self._proxy = proxy  # resolved once: aiohttp's trust_env would look it up (and ~/.netrc) per request
        self._agent = {"User-Agent": user_agent} if user_agent else {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)

    def url(self, key: str) -> str:
        return f"{self._origin}{self._path(key)}"

    def _path(self, key: str | None) -> str:
        if key is None:
            return self._root or "/"
        return f"{self._root}/{quote(key, safe='/~')}"

    async def put(self, key: str, body: IO[bytes], *, size: int, sha256: bytes, headers: Mapping[str, str]) -> None:
        """Store *size* bytes of *body* under *key*, create-only."""
        body.seek(0)
        data: bytes | AsyncIterator[bytes]
        if size <= _CHUNK:
            data = body.read(size)
            if len(data) != size:
                raise OSError("the download buffer is shorter than its recorded size")
        else:
            data = _chunks(body, size)
        sent = {**headers, "If-None-Match": "*", **_checksum(sha256), "Content-Length": str(size)}
        async with self._exchange("PUT", key, headers=sent, data=data, payload=sha256.hex()):
            pass

    async def put_small(self, key: str, data: bytes, *, headers: Mapping[str, str]) -> str:
        """Store *data* under *key* on the conditions in *headers*; the new ETag."""
        digest = hashlib.sha256(data).digest()
        sent = {**headers, **_checksum(digest), "Content-Length": str(len(data))}
        async with self._exchange("PUT", key, headers=sent, data=data, payload=digest.hex()) as response:
            return response.headers.get("ETag", "")

    async def head(self, key: str) -> CIMultiDictProxy[str] | None:
        """The object's headers (with its stored checksum), or None when there is no such object."""
        try:
            async with self._exchange("HEAD", key, headers={"x-amz-checksum-mode": "ENABLED"}) as found:
                return found.headers
        except WireRefused as exc:
            if exc.absent:
                return None
            raise

    async def read(self, key: str, max_bytes: int) -> tuple[bytes, str] | None:
        """At most *max_bytes* + 1 bytes of the object and its ETag; None when there is none."""
        try:
            async with self._exchange("GET", key) as found:
                return await _read_upto(found, max_bytes + 1), found.headers.get("ETag", "")
        except WireRefused as exc:
            if exc.absent:
                return None
            raise

    async def stream(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from *start* up to *end* (exclusive), in chunks."""
        ranged = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else {}
        async with self._exchange("GET", key, headers=ranged, ok=(200, 206)) as response:
            async for chunk in response.content.iter_chunked(1 << 20):
                yield chunk

    async def list(self, prefix: str, *, delimiter: str | None = None, token: str | None = None) -> Listing:
        """One page (up to 1,000 entries) of the keys under *prefix*."""
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000", "encoding-type": "url"}
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["continuation-token"] = token
        async with self._exchange("GET", None, query=query) as response:
            answer = await _read_upto(response, _MAX_ANSWER)
        return _listing(answer)

    async def delete(self, key: str) -> None:
        async with self._exchange("DELETE", key, ok=(200, 204)):
            pass

    @contextlib.asynccontextmanager
    async def _exchange(
        self,
        method: str,
        key: str | None,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | AsyncIterator[bytes] | None = None,
        payload: str = EMPTY_SHA256,
        ok: tuple[int, ...] = (200,),
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one signed request; yield the answer when its status is in *ok*, else raise
        WireRefused. A broken exchange raises WireUnanswered."""
        path = self._path(key)
        encoded = encode_query(query) if query else ""
        signed = self._signer.sign(method, self._host, path, encoded, {**self._agent, **(headers or {})}, payload)
        url = URL(f"{self._origin}{path}{'?' + encoded if encoded else ''}", encoded=True)
        try:
            async with self._open().request(
                method, url, data=data, headers=signed, timeout=self._timeout, allow_redirects=False, proxy=self._proxy
            ) as response:
                if response.status in ok:
                    yield response
                    return
                answer = await response.content.read(64 << 10)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise WireUnanswered(type(exc).__name__) from None
        code, message = _error(answer)
        raise WireRefused(response.status, code, message)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the event loop, as aiohttp wants
            # As boto3 does: the CA bundle it was told of; a plain-HTTP endpoint needs no TLS context.
            tls = ssl.create_default_context(cafile=self._ca_bundle) if self._ca_bundle and self._secure else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=tls), auto_decompress=False
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_upto(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, or its first *limit* bytes (``content.read(n)`` stops at a chunk)."""
    body = bytearray()
    while len(body) < limit and (chunk := await response.content.read(limit - len(body))):
        body += chunk
    return bytes(body)


def _checksum(sha256: bytes) -> dict[str, str]:
    return {
        "x-amz-sdk-checksum-algorithm": "SHA256",
        "x-amz-checksum-sha256": base64.b64encode(sha256).decode("ascii"),
    }


async def _chunks(body: IO[bytes], size: int) -> AsyncIterator[bytes]:
    """*size* bytes of *body* in pieces; the buffer is local (memory or a freshly written file)."""
    left = size
    while left > 0:
        piece = body.read(min(_CHUNK, left))
        if not piece:
            raise OSError("the download buffer is shorter than its recorded size")
        left -= len(piece)
        yield piece


def _listing(answer: bytes) -> Listing:
    """A ListObjectsV2 answer (``encoding-type=url``), with or without S3's XML namespace."""
    try:
        root = ElementTree.fromstring(answer)  # noqa: S314 (our own bucket's answer; expat expands no external entities)
    except ElementTree.ParseError as exc:
        raise WireRefused(200, "MalformedListing", f"the listing is not XML: {exc}") from None
    fields: dict[str, str] = {}
    keys: list[str] = []
    folders: list[str] = []
    for child in root:
        name = _local(child.tag)
        if name == "Contents":
            keys.extend(e.text or "" for e in child if _local(e.tag) == "Key")
        elif name == "CommonPrefixes":
            folders.extend(e.text or "" for e in child if _local(e.tag) == "Prefix")
        else:
            fields[name] = (child.text or "").strip()
    if fields.get("EncodingType") == "url":  # as botocore: decoded only when the server says it encoded
        keys, folders = [unquote_plus(k) for k in keys], [unquote_plus(f) for f in folders]
    truncated, token = fields.get("IsTruncated") == "true", fields.get("NextContinuationToken")
    if truncated and not token:
        raise WireRefused(200, "MalformedListing", "a truncated listing without a continuation token")
    return Listing(keys, folders, token if truncated else None)


def _local(tag: str) -> str:
    """An element's name without its XML namespace."""
    return tag.rsplit("}", 1)[-1]


def _error(body: bytes) -> tuple[str, str]:
    """The S3 error code and message in an error answer (both empty when there is none).

    Read with a pattern, not an XML parser: the answer is small and we want two fields of it,
    with no entity expansion whatever the server sends.
    """
    text = body.decode("utf-8", "replace")
    code, message = _CODE.search(text), _MESSAGE.search(text)
    return (code.group(1).strip() if code else ""), (message.group(1).strip()[:300] if message else "")
