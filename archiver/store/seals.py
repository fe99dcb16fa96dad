"""Reading the seal chain from the store (see :mod:`archiver.core.seal`)."""

from __future__ import annotations

import anyio

from archiver.core import seal
from archiver.errors import CallError
from archiver.store import Store

SEAL_LIMIT = 16 << 20  # bytes; a seal is small, but the first one of an old archive lists every day


async def read_chain(store: Store, prefix: str, *, concurrency: int = 8) -> seal.Chain:
    """Every seal of the archive, read and checked link by link."""
    reader = ChainReader(store, prefix, concurrency=concurrency)
    await reader.read_all()
    return reader.chain


class ChainReader:
    """The seal chain as read so far, checked link by link; what is read later adds to it.

    The sealer reads only the head until it needs more; a reader that stays open (``browse``, a
    ``verify`` looking again) reads only the seals written since.
    """

    def __init__(self, store: Store, prefix: str, *, concurrency: int = 8) -> None:
        self._store = store
        self._prefix = prefix
        self._concurrency = concurrency
        self._stored: dict[str, bytes | None] = {}  # the seals read, by key (None: listed, unreadable)
        self.chain = seal.Chain(prefix=prefix)
        self.whole = False  # whether every seal of the chain has been read

    @property
    def listed(self) -> bool:
        """Whether any seal was found (an archive without one has no chain yet)."""
        return bool(self._stored)

    async def read_head(self) -> None:
        """Read the chain's last seal only: one listing, one read."""
        self._add(await read_seals(self._store, self._prefix, concurrency=self._concurrency, last_only=True))
        self.whole = self.whole or not self._stored  # an empty chain is read whole

    async def read_all(self) -> None:
        """Read every seal."""
        self._add(await read_seals(self._store, self._prefix, concurrency=self._concurrency))
        self.whole = True

    async def read_newer(self) -> None:
        """Read the seals numbered after the last one read (all of them, when none was)."""
        after = self.chain.length
        self._add(await read_seals(self._store, self._prefix, concurrency=self._concurrency, after=after))
        self.whole = self.whole or after == 0

    def add(self, key: str, raw: bytes) -> None:
        """A seal this process has just written."""
        self._add({key: raw})

    def _add(self, found: dict[str, bytes | None]) -> None:
        self._stored |= found
        self.chain = seal.check_chain(self._prefix, self._stored)


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
