"""Reading the seal chain from the store (see :mod:`archiver.core.seal`)."""

from __future__ import annotations

import anyio

from archiver.core import seal
from archiver.errors import CallError
from archiver.store import Store

SEAL_LIMIT = 16 << 20  # bytes; a seal is small, but the first one of an old archive lists every day


async def read_chain(store: Store, prefix: str, *, concurrency: int = 8) -> seal.Chain:
    """Every seal of the archive, read and checked link by link."""
    return seal.check_chain(prefix, await read_seals(store, prefix, concurrency=concurrency))


async def read_seals(
    store: Store, prefix: str, *, concurrency: int = 8, after: int = 0, last_only: bool = False
) -> dict[str, bytes | None]:
    """The bytes of each seal numbered above *after* (None: listed but unreadable), by key.

    *last_only*: only the highest-numbered seal (the chain's head): one listing, one read.
    """
    keys = [
        key
        async for key in store.list_keys(seal.folder(prefix))
        if (seal.sequence_of(prefix, key) or after + 1) > after
    ]
    if last_only:
        numbered = [k for k in keys if seal.sequence_of(prefix, k) is not None]
        keys = [max(numbered, key=lambda k: seal.sequence_of(prefix, k) or 0)] if numbered else []
    found: dict[str, bytes | None] = {}
    limiter = anyio.CapacityLimiter(concurrency)

    async def read(key: str) -> None:
        async with limiter:
            try:
                found[key] = await store.read(key, SEAL_LIMIT)
            except CallError:
                found[key] = None

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(read, key)
    return found
