"""AWS Signature Version 4 for the S3 requests the archive sends itself (no I/O).

botocore's signer costs ~0.1 s of CPU to import (it brings botocore's compatibility layer,
urllib3 and its request model) and ~0.1 ms per request; this is the same algorithm on
:mod:`hmac` and :mod:`hashlib`, with the day's signing key kept. The unit tests hold its
``Authorization`` header to botocore's, byte for byte, over a table of requests.

S3 flavour: the path is signed as sent (already percent-encoded once, never normalised), and
the payload's SHA-256 is the one computed while the body was downloaded, so nothing is read
twice.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ALGORITHM = "AWS4-HMAC-SHA256"
# Headers a proxy or the HTTP layer may change on the way: never signed (as botocore).
_UNSIGNED = frozenset({"authorization", "content-length", "expect", "transfer-encoding", "user-agent"})


@dataclass(frozen=True)
class Credentials:
    """Static S3 credentials; the secret is never printed."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def encode_query(query: Mapping[str, str]) -> str:
    """The query string as SigV4 signs it and as it must be sent: sorted, every reserved
    character percent-encoded."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))


class Signer:
    """Signs requests for one service in one region, with *credentials*: static ones, or a
    function that gives the current ones (an instance role's, which boto3 renews)."""

    def __init__(self, credentials: Credentials | Callable[[], Credentials], region: str, service: str = "s3") -> None:
        self._credentials = credentials if callable(credentials) else lambda: credentials
        self._region = region
        self._service = service
        self._day_key: tuple[str, str, bytes] = ("", "", b"")

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        payload_sha256: str,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """*headers* plus ``x-amz-date``, ``x-amz-content-sha256``, the session token if any, and
        ``Authorization``. *path* is the percent-encoded path sent, *query* the encoded query
        (:func:`encode_query`), *host* the ``Host`` header sent (port included when not the
        scheme's default)."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        credentials = self._credentials()
        out = dict(headers)
        out["x-amz-date"] = stamp
        out["x-amz-content-sha256"] = payload_sha256
        if credentials.token:
            out["x-amz-security-token"] = credentials.token
        canonical = {"host": host}
        for name, value in out.items():
            lowered = name.lower()
            if lowered not in _UNSIGNED:
                canonical[lowered] = " ".join(str(value).split())
        names = sorted(canonical)
        signed_names = ";".join(names)
        request = "\n".join(
            (
                method,
                path,
                query,
                "".join(f"{name}:{canonical[name]}\n" for name in names),
                signed_names,
                payload_sha256,
            )
        )
        day = stamp[:8]
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = f"{_ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(self._key(day, credentials.secret_key), to_sign.encode(), hashlib.sha256).hexdigest()
        out["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return out

    def _key(self, day: str, secret: str) -> bytes:
        """The signing key of *day* (derived once a day and secret, not once a request)."""
        if self._day_key[:2] != (day, secret):
            key = f"AWS4{secret}".encode()
            for part in (day, self._region, self._service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day_key = (day, secret, key)
        return self._day_key[2]
