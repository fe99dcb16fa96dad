"""Reading the archive's day folders: what each holds, sorted by what it is.

Both the write path (which calls a day already holds; which day files exist) and the audit
(``verify``, ``reconcile``) read the bucket through these listings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import anyio

from archiver.core import dayfiles, keys
from archiver.core.identity import call_id_for_row
from archiver.errors import CallError
from archiver.store import Store

SIDECAR_LIMIT = 1 << 20  # bytes; a sidecar is a few KiB
MANIFEST_LIMIT = 64 << 20  # bytes; a day of a busy PBX lists tens of thousands of files


@dataclass
class DayFileSet:
    """One numbered set of a day's files (1 is the day's first, 2… its addenda): their keys."""

    number: int
    manifest: str | None = None
    csv: str | None = None
    page: str | None = None

    def add(self, kind: str, key: str) -> None:
        if kind == "manifest-sha256":
            self.manifest = key
        elif kind == "calls":
            self.csv = key
        else:
            self.page = key


@dataclass
class DayListing:
    """The objects of one day's folder: each call's sidecar and audio, the day files, and strays."""

    day: date
    folder: str
    sidecars: dict[str, str] = field(default_factory=dict)  # call id -> key of its current record
    revisions: dict[str, dict[int, str]] = field(default_factory=dict)  # call id -> {revision: key}
    audio: dict[str, list[str]] = field(default_factory=dict)  # call id -> keys
    sets: dict[int, DayFileSet] = field(default_factory=dict)
    strays: list[str] = field(default_factory=list)  # neither a call's object nor a day file
    objects: list[str] = field(default_factory=list)  # every key, in the order listed

    def add(self, key: str) -> None:
        self.objects.append(key)
        name = key[len(self.folder) :]
        parsed = keys.parse_call_key(key)
        number = dayfiles.set_number(name)
        if parsed and "/" not in name:
            if parsed.ext == "json":
                records = self.revisions.setdefault(parsed.call_id, {})
                records[parsed.revision] = key
                self.sidecars[parsed.call_id] = records[max(records)]  # the highest is current
            else:
                self.audio.setdefault(parsed.call_id, []).append(key)
        elif number is not None:
            self.sets.setdefault(number, DayFileSet(number)).add(name.split(".")[0], key)
        else:
            self.strays.append(key)

    @property
    def manifests(self) -> dict[int, str]:
        """The key of each set's manifest, by set number (a set without one was interrupted)."""
        return {n: s.manifest for n, s in sorted(self.sets.items()) if s.manifest is not None}

    def sidecar_keys(self) -> list[tuple[str, int, str]]:
        """Every record of every call: (call id, revision, key), in order."""
        return sorted((cid, n, key) for cid, records in self.revisions.items() for n, key in records.items())

    @property
    def empty(self) -> bool:
        return not self.sidecars and not self.audio and not self.sets


async def list_day(store: Store, prefix: str, day: date) -> DayListing:
    """One day's listing."""
    listing = DayListing(day, keys.day_prefix(prefix, day))
    async for key in store.list_keys(listing.folder):
        listing.add(key)
    return listing


async def day_listings(store: Store, prefix: str, days: list[date] | None) -> AsyncIterator[DayListing]:
    """Each day's listing: of *days*, or of every day in the archive (streamed, a day at a time)."""
    if days is not None:
        for day in days:
            yield await list_day(store, prefix, day)
        return
    current: DayListing | None = None
    root = f"{prefix}/" if prefix else ""
    async for key in store.list_keys(root):
        parsed_day = _day_of(key[len(root) :])
        if parsed_day is None:
            continue  # control objects (_archiver/) and anything outside the day folders
        if current is None or current.day != parsed_day:
            if current is not None:
                yield current
            current = DayListing(parsed_day, keys.day_prefix(prefix, parsed_day))
        current.add(key)
    if current is not None:
        yield current


async def archive_days(store: Store, prefix: str, *, hidden: bool = False) -> list[date]:
    """Every day that has a folder in the archive, oldest first: a listing per year and per month
    folder, never of the objects themselves. *hidden*: also the days whose every object is behind
    a delete marker (listed from the versions: a listing of objects does not show them)."""
    root = f"{prefix}/" if prefix else ""
    days: list[date] = []
    async for year in store.list_folders(root, hidden=hidden):
        if not (len(year) == 4 and year.isdigit()):
            continue  # _archiver/ and anything that is not a year
        async for month in store.list_folders(f"{root}{year}/", hidden=hidden):
            if not (len(month) == 2 and month.isdigit()):
                continue
            async for day in store.list_folders(f"{root}{year}/{month}/", hidden=hidden):
                found = _day_of(f"{year}/{month}/{day}/") if len(day) == 2 else None
                if found is not None:
                    days.append(found)
    return days


async def stored_call_ids(store: Store, prefix: str, day: date, *, concurrency: int = 8) -> set[str]:
    """The ids of the calls *day* holds: every sidecar's, and for a call without a recording stored
    under the id earlier versions gave (a hash of the whole row), also the id it has now.

    So a call archived before the ``nr-`` id became stable is known under both, and is not
    archived a second time. Costs a read of each ``nr-`` sidecar of the day.
    """
    return await call_ids_of(store, await list_day(store, prefix, day), concurrency=concurrency)


async def call_ids_of(store: Store, listing: DayListing, *, concurrency: int = 8) -> set[str]:
    """:func:`stored_call_ids` of a day already listed."""
    found = set(listing.sidecars)
    unrecorded = {cid: key for cid, key in listing.sidecars.items() if cid.startswith("nr-")}
    if unrecorded:
        docs = await _read(store, unrecorded, anyio.CapacityLimiter(concurrency))
        for doc in docs.values():
            if "cdr" in doc:
                found.add(call_id_for_row(doc["cdr"]))
    return found


async def unmanifested(store: Store, listing: DayListing) -> list[str]:
    """The records (sidecars and revisions) of a day with day files that no manifest names: what
    the day's next addendum must seal. Costs a read of each manifest; none for a day without."""
    if not listing.manifests:
        return []
    named: set[str] = set()
    for key in listing.manifests.values():
        try:
            named |= set(dayfiles.parse_manifest((await store.read(key, MANIFEST_LIMIT)).decode()))
        except (CallError, ValueError, UnicodeDecodeError):
            continue  # verify names a manifest that cannot be read; the closer stops at it
    return [key for _, _, key in listing.sidecar_keys() if key[len(listing.folder) :] not in named]


async def read_sidecars(
    store: Store, prefix: str, day: date, limiter: anyio.CapacityLimiter
) -> dict[str, dict[str, Any]]:
    """Every sidecar of *day*, parsed (unreadable ones are left out: ``verify`` names them)."""
    return await _read(store, (await list_day(store, prefix, day)).sidecars, limiter)


async def _read(store: Store, sidecars: dict[str, str], limiter: anyio.CapacityLimiter) -> dict[str, dict[str, Any]]:
    """The sidecars named (call id -> key), parsed; unreadable ones left out."""
    docs: dict[str, dict[str, Any]] = {}

    async def read(call_id: str, key: str) -> None:
        async with limiter:
            try:
                doc = json.loads(await store.read(key, SIDECAR_LIMIT))
            except (CallError, ValueError):
                return
        if isinstance(doc, dict):
            docs[call_id] = doc

    async with anyio.create_task_group() as tg:
        for call_id, key in sidecars.items():
            tg.start_soon(read, call_id, key)
    return docs


def day_of_folder(prefix: str, folder: str) -> date | None:
    """The day whose folder is *folder* (``{prefix}/YYYY/MM/DD/``), or None."""
    root = f"{prefix}/" if prefix else ""
    return _day_of(folder[len(root) :] + "x") if folder.startswith(root) else None


def _day_of(relative: str) -> date | None:
    parts = relative.split("/")
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None
