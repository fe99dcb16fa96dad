"""Create-only PUT of one object, sent with aiohttp and signed with botocore's SigV4 signer.

This is the archive's hot path: two PUTs per call (audio, then sidecar). Through boto3 each
costs ~2.4 ms of CPU (request model, event hooks, urllib3 in a worker thread); this costs
~1 ms, which is what lets one Python process keep up with rclone (see benchmarks/). boto3
still does everything else (multipart, reads, listings, control objects) and resolves the
bucket's address once: the object URL is the one botocore itself would use.

The payload hash in the signature is the SHA-256 the fetcher computed while streaming, so the
body is signed without a second pass over it, and ``x-amz-checksum-sha256`` makes the server
check the bytes it stored.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import IO
from urllib.parse import quote

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_CHUNK = 256 << 10
_PROBE = "ccall-archiver-probe"
_CODE = re.compile(r"<Code>([^<]{0,200})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{0,2000})</Message>")


class PutRefused(Exception):
    """The server answered the PUT with an error: its status, S3 error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code or status}: {message}")
        self.status, self.code, self.message = status, code, message


class PutUnanswered(Exception):
    """The PUT got no answer: connection refused or reset, or a timeout."""


class DirectPut:
    """PUT objects of one bucket without boto3's per-request machinery."""

    probe_key = _PROBE  # the key whose presigned URL url_template reads

    def __init__(
        self,
        *,
        object_url: Callable[[str], str],
        credentials: Credentials,
        region: str,
        connections: int = 16,
        timeout: float = 60.0,
        ca_bundle: str | None = None,
        proxy: str | None = None,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._connections = connections
        self._ca_bundle = ca_bundle  # as botocore's (AWS_CA_BUNDLE, ca_bundle in the AWS config)
        self._proxy = proxy  # resolved once: aiohttp's trust_env would look it up (and ~/.netrc) per request
        self._object_url = object_url
        self._credentials = credentials
        self._region = region
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)

    @staticmethod
    def url_template(presigned_probe: str) -> Callable[[str], str]:
        """From a presigned URL for the key ``ccall-archiver-probe``, a function that gives any key's URL."""
        base = presigned_probe.split("?", 1)[0]
        if not base.endswith(_PROBE):
            raise ValueError("the presigned URL does not end with the probe key")
        prefix = base[: -len(_PROBE)]
        return lambda key: prefix + quote(key, safe="/~")

    async def put(self, key: str, body: IO[bytes], *, size: int, sha256: bytes, headers: Mapping[str, str]) -> None:
        """Store *size* bytes of *body* under *key*, create-only. Raises PutRefused or PutUnanswered."""
        url = self._object_url(key)
        signed = {
            **headers,
            "If-None-Match": "*",
            "x-amz-sdk-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": base64.b64encode(sha256).decode("ascii"),
            "X-Amz-Content-SHA256": sha256.hex(),
        }
        request = AWSRequest("PUT", url, headers=signed)
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        out = dict(request.headers.items())
        out["Content-Length"] = str(size)
        body.seek(0)
        if self._session is None:  # made here, inside the event loop, as aiohttp wants
            # As boto3 does: the CA bundle it was told of; a plain-HTTP endpoint needs no TLS context.
            secure = self._object_url("").startswith("https:")
            tls = ssl.create_default_context(cafile=self._ca_bundle) if self._ca_bundle and secure else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=tls), auto_decompress=False
            )
        data: bytes | AsyncIterator[bytes]
        if size <= _CHUNK:
            data = body.read(size)
            if len(data) != size:
                raise OSError("the download buffer is shorter than its recorded size")
        else:
            data = _chunks(body, size)
        try:
            async with self._session.put(
                url, data=data, headers=out, timeout=self._timeout, allow_redirects=False, proxy=self._proxy
            ) as response:
                answer = await response.content.read(64 << 10)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PutUnanswered(type(exc).__name__) from None
        if status == 200:
            return
        code, message = _error(answer)
        raise PutRefused(status, code, message)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _chunks(body: IO[bytes], size: int) -> AsyncIterator[bytes]:
    """*size* bytes of *body* in pieces; the buffer is local (memory or a freshly written file)."""
    left = size
    while left > 0:
        piece = body.read(min(_CHUNK, left))
        if not piece:
            raise OSError("the download buffer is shorter than its recorded size")
        left -= len(piece)
        yield piece


def _error(body: bytes) -> tuple[str, str]:
    """The S3 error code and message in an error answer (both empty when there is none).

    Read with a pattern, not an XML parser: the answer is small and we want two fields of it,
    with no entity expansion whatever the server sends.
    """
    text = body.decode("utf-8", "replace")
    code, message = _CODE.search(text), _MESSAGE.search(text)
    return (code.group(1).strip() if code else ""), (message.group(1).strip()[:300] if message else "")
