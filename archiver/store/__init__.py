"""Object stores behind one interface: :class:`S3Store` and :class:`LocalStore`.

The archive's guarantees rest on three properties every store provides:

- **create-only**: ``put`` never replaces an object; a taken key raises ObjectExists;
- **atomic**: an object is either absent or complete, whatever happens mid-write;
- **checked**: the SHA-256 computed while downloading goes with the write, and a store that
  can check it (S3's ``ChecksumSHA256``) rejects a damaged upload.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import IO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows of one object without reading it."""

    key: str
    size: int
    sha256: bytes | None  # None when the store keeps no checksum for it


class Store(Protocol):
    """Where the archive lives. Keys are full keys, prefix included."""

    description: str

    async def put(
        self,
        key: str,
        body: IO[bytes],
        *,
        size: int,
        sha256: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Store *body* under *key*, create-only and atomically.

        Raises ObjectExists when the key is taken, StoreUnavailable when the store did not
        answer (nothing was stored), StoreAccessError when it refused us.
        """
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and stored checksum, or None when there is no such object."""
        ...

    async def read(self, key: str, max_bytes: int = 1 << 20) -> bytes:
        """The whole object (a sidecar, a manifest); raises CallError past *max_bytes*."""
        ...

    async def digest(self, key: str) -> tuple[int, bytes]:
        """``(size, sha256)`` of the object, computed by reading every byte."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key that starts with *prefix*, in lexical order."""
        ...

    async def delete(self, key: str) -> None:
        """Remove *key* (used only for the preflight's own probe object)."""
        ...

    async def aclose(self) -> None: ...


async def put_bytes(store: Store, key: str, data: bytes, content_type: str) -> None:
    """Store a small document create-only, with its SHA-256."""
    await store.put(
        key,
        io.BytesIO(data),
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        content_type=content_type,
    )
