"""In-memory stand-ins that implement the project's own protocols (seams, not patches)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from archiver.errors import ObjectExists


class MemoryControlStore:
    """A :class:`archiver.store.ControlStore` in a dict, with S3's conditional-write semantics:
    ``If-None-Match: *`` fails on a taken key, ``If-Match`` fails unless the ETag is current."""

    description = "memory://control"

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self._writes = 0

    async def put_conditional(self, key: str, data: bytes, *, if_match: str | None) -> str:
        current = self.objects.get(key)
        if (if_match is None and current is not None) or (
            if_match is not None and (current is None or current[1] != if_match)
        ):
            raise ObjectExists(key)
        self._writes += 1
        etag = f'"{hashlib.md5(data + str(self._writes).encode(), usedforsecurity=False).hexdigest()}"'
        self.objects[key] = (data, etag)
        return etag

    async def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        return self.objects.get(key)

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield key

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def aclose(self) -> None:
        return None
