"""The keys store: where each encrypted recording's key object and label live (see
:mod:`archiver.core.keyobjects` for the names), in a bucket or folder of their own.

A :class:`KeyStore` is a :class:`~archiver.store.Store` and a prefix: key objects and labels are
written create-only and read back like any small document, and removed, every version, when a
call is erased (crypto-shredding), its day expires, or ``rekey`` has written a key again. The
keys bucket must have no default retention: its objects must be deletable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date

from archiver.core import keyobjects, keys
from archiver.core.keyobjects import KEY_LIMIT, LABEL_LIMIT, Label
from archiver.errors import CallError, ObjectExists
from archiver.store import Removal, Store, StoredVersion, put_bytes
from archiver.store.listing import archive_days


@dataclass
class RecordingKeys:
    """What the keys store holds for one recording (*stem*): each key's label, and its key objects
    by the recipient set they are wrapped to."""

    stem: str
    labels: dict[str, str] = field(default_factory=dict)  # tag -> label key
    objects: dict[str, dict[str, str]] = field(default_factory=dict)  # tag -> {recipient set: key object}

    def add(self, key: str, name: keyobjects.KeyName) -> None:
        if name.recipients is None:
            self.labels[name.tag] = key
        else:
            self.objects.setdefault(name.tag, {})[name.recipients] = key

    def keys_of(self, tag: str) -> list[str]:
        """Every object of the key *tag*: its key objects and its label."""
        found = list(self.objects.get(tag, {}).values())
        return found + ([self.labels[tag]] if tag in self.labels else [])

    @property
    def all(self) -> list[str]:
        return sorted(k for tag in {*self.labels, *self.objects} for k in self.keys_of(tag))


class KeyStore:
    """Key objects and labels in *store* under *prefix* (``storage.encryption.keys_url``)."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.description = store.description

    def stem(self, recording_key: str) -> str:
        """The stem of the keys of the encrypted recording *recording_key*; ValueError for a key
        that is not a recording's."""
        found = keyobjects.stem_of(self.prefix, recording_key)
        if found is None:
            raise ValueError(f"{recording_key} is not the key of a recording")
        return found

    async def put(self, key: str, data: bytes) -> None:
        """Store a key object or a label create-only (one that landed already is this write)."""
        await put_bytes(
            self.store, key, data, "application/octet-stream" if key.endswith(".age") else "application/json"
        )

    async def read_key(self, key: str) -> bytes:
        """A key object's bytes (ObjectMissing when it is gone; CallError when it is far too large)."""
        return await self.store.read(key, KEY_LIMIT)

    async def read_label(self, key: str) -> Label:
        """A label, parsed; CallError saying what is wrong with it."""
        raw = await self.store.read(key, LABEL_LIMIT)
        try:
            return Label.parse(raw)
        except ValueError as exc:
            raise CallError(f"the key label {key} in {self.description} is damaged: {exc}") from None

    async def of(self, stem: str) -> RecordingKeys:
        """What the store holds for the recording *stem* (one listing)."""
        found = RecordingKeys(stem)
        async for key in self.store.list_keys(stem + "."):
            name = keyobjects.parse(key)
            if name is not None and name.stem == stem:
                found.add(key, name)
        return found

    async def day(self, day: date) -> dict[str, RecordingKeys]:
        """What the store holds for each recording of *day* (one listing of the day's folder)."""
        found: dict[str, RecordingKeys] = {}
        async for key in self.store.list_keys(keys.day_prefix(self.prefix, day)):
            name = keyobjects.parse(key)
            if name is not None:
                found.setdefault(name.stem, RecordingKeys(name.stem)).add(key, name)
        return found

    async def days(self) -> list[date]:
        """Every day that has a folder in the keys store, oldest first."""
        return await archive_days(self.store, self.prefix)

    async def days_keys(self) -> AsyncIterator[tuple[date, dict[str, RecordingKeys]]]:
        """Each day's keys, a day at a time."""
        for day in await self.days():
            yield day, await self.day(day)

    async def versions_of(self, stem: str, tag: str | None = None) -> list[StoredVersion]:
        """Every version (and delete marker) of the keys store's objects of the recording *stem*
        (of its key *tag* only, when given): one listing of versions."""
        found = []
        for version in await self.store.versions_in(stem + "."):  # a prefix: the stem's objects alone
            name = keyobjects.parse(version.key)
            if name is not None and name.stem == stem and (tag is None or name.tag == tag):
                found.append(version)
        return found

    async def remove_versions(self, versions: Sequence[StoredVersion]) -> Removal:
        """Remove exactly *versions*; a version the store keeps is a hold (the keys bucket has
        retention it must not have), reported, never forced."""
        return await self.store.remove_versions(versions)

    async def remove(self, keys_: Sequence[str]) -> Removal:
        """Remove every version of each of *keys_*."""
        return await self.store.remove(keys_) if keys_ else Removal()

    async def aclose(self) -> None:
        await self.store.aclose()


async def put_new(keys_store: KeyStore, key: str, data: bytes) -> None:
    """Store *data* under a name no other write uses (a new key's): a different object there is
    someone else's doing, never overwritten (CallError)."""
    try:
        await keys_store.put(key, data)
    except ObjectExists:
        raise CallError(f"{key} in {keys_store.description} holds something else; nothing was overwritten") from None
