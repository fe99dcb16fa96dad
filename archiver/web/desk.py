"""One source's archive as the desk reads it: its store, catalog, seal chain, day book and trail."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

import anyio

from archiver.audit.access import AccessTrail
from archiver.audit.catalog import CallFiles, Catalog
from archiver.audit.daybook import DayBook
from archiver.audit.plaintext import Decrypter
from archiver.core import seal
from archiver.core.clock import Clock
from archiver.store import Store
from archiver.store.seals import ChainReader

REMEMBERED_DAYS = 100_000  # call id -> day, as pages have shown it


@dataclass
class Desk:
    """*name* is the source's name (``default`` for a file's single ``source:``); *decrypter* reads
    its encrypted recordings (None: nothing here can, and *why_not* says which setting is missing)."""

    name: str
    store: Store
    prefix: str
    tz: ZoneInfo
    country_code: str
    catalog: Catalog
    seals: ChainReader
    seals_lock: anyio.Lock
    daybook: DayBook
    trail: AccessTrail | None = None
    days_of: OrderedDict[str, date] = field(default_factory=OrderedDict)
    decrypter: Decrypter | None = None
    why_not: str = "storage.encryption is not set"

    @classmethod
    def open(
        cls,
        name: str,
        store: Store,
        prefix: str,
        tz: ZoneInfo,
        clock: Clock,
        *,
        country_code: str = "84",
        concurrency: int = 8,
        trail: AccessTrail | None = None,
        watched: frozenset[str] = frozenset(),
        cold_class: str | None = None,
        decrypter: Decrypter | None = None,
        why_not: str = "storage.encryption is not set",
    ) -> Desk:
        """The parts of a desk over *store*'s archive under *prefix*; *watched*: the extensions
        browse.scopes narrows this source to; *cold_class*: the class recordings are written in."""
        seals = ChainReader(store, prefix, concurrency=concurrency)
        lock = anyio.Lock()
        book = DayBook(
            store, prefix, tz, seals, lock, clock, watched=watched, cold_class=cold_class, concurrency=concurrency
        )
        catalog = Catalog(store, prefix, tz, concurrency=concurrency)
        return cls(
            name,
            store,
            prefix,
            tz,
            country_code,
            catalog,
            seals,
            lock,
            book,
            trail,
            decrypter=decrypter,
            why_not=why_not,
        )

    async def chain(self) -> seal.Chain:
        """The seal chain, with the seals written since it was last read."""
        async with self.seals_lock:
            await self.seals.read_newer()
            return self.seals.chain

    def shown(self, call_id: str, day: date) -> None:
        """Remember where a page showed *call_id*, so its links find it at once."""
        self.days_of.pop(call_id, None)
        self.days_of[call_id] = day
        while len(self.days_of) > REMEMBERED_DAYS:
            self.days_of.popitem(last=False)

    async def locate(self, call_id: str, near: Iterable[date] = ()) -> CallFiles | None:
        """The call's files in this source, or None."""
        days = [self.days_of[call_id]] if call_id in self.days_of else []
        days += list(near)
        with contextlib.suppress(ValueError):
            files = await self.catalog.locate(call_id, near=days)
            if files is not None and files.records:
                self.shown(call_id, files.day)
                return files
        return None
