"""Writing the seal chain: a seal for each day-file set written (see :mod:`archiver.core.seal`)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection
from functools import partial

import anyio
import structlog

from archiver.core import keys, seal
from archiver.core.clock import Clock
from archiver.core.seal import Chain, Expiry, Link, Rekey, Seal
from archiver.errors import CallError, ConfigError, ObjectExists
from archiver.store import Store, put_bytes
from archiver.store.listing import MANIFEST_LIMIT, archive_days
from archiver.store.seals import ChainReader

log = structlog.get_logger("archiver.archive")


class Sealer:
    """Appends seals to the archive's chain; shared by every day closed in one process.

    Sealing a manifest this process has just written needs only the chain's head (one listing,
    one read); sealing one that may be sealed already (a run interrupted between manifest and
    seal, an addendum's earlier sets) reads the whole chain, once per process. Numbers are taken
    create-only: when another archiver took the next one first, its seals are read and the next
    free number taken. The first seal of an archive also seals every manifest written before
    seals were kept.
    """

    def __init__(
        self, store: Store, prefix: str, clock: Clock, *, concurrency: int = 8, timezone: str | None = None
    ) -> None:
        """*timezone*: the zone the days of the archive are filed in, stated in every seal written
        (so that retention, and whoever reads the chain, need no configuration to know it)."""
        self._store = store
        self._prefix = prefix
        self._clock = clock
        self._timezone = timezone
        self._concurrency = concurrency
        self._reader = ChainReader(store, prefix, concurrency=concurrency)
        self._read = False  # whether the chain has been read at all
        self._lock = anyio.Lock()

    async def seal(self, manifests: dict[str, str], *, fresh: Collection[str] = ()) -> None:
        """Seal each manifest of *manifests* (key -> SHA-256 of its bytes) that no seal names yet.

        *fresh*: the keys this process has just created, which no seal can name yet.
        """
        reader = self._reader
        async with self._lock:
            only_fresh = set(manifests) <= set(fresh)
            if not self._read or not (reader.whole or only_fresh):
                await (reader.read_head() if only_fresh else reader.read_all())
                self._read = True
                if not reader.listed:  # no seal at all yet: the first one covers the days before seals
                    earlier = await self._manifests_before_seals()
                    if set(earlier) - set(manifests):
                        log.info("seal.earlier_manifests", manifests=len(set(earlier) - set(manifests)))
                    manifests = {**earlier, **manifests}
            while todo := self._unsealed(manifests, fresh):
                key = await self._append(partial(self._manifest_seal, todo))
                if key is not None:
                    fresh = set(fresh) - set(todo)

    async def chain(self) -> Chain:
        """The whole chain, as read (once per process) and as extended since."""
        async with self._lock:
            if not self._reader.whole:
                await self._reader.read_all()
                self._read = True
            return self._reader.chain

    async def record_expiry(self, expired: list[Expiry], policy: str, *, timezone: str | None = None) -> None:
        """Record in the chain (one seal) the expiry of days, under *policy*, unless a seal records
        them already as they are: a record of a day recorded before names the manifests its
        earlier records do not (an addendum written meanwhile). The seal states *policy* when the
        chain does not yet say it is the one in force. The first seal of an archive also seals
        every manifest written before seals were kept, as a manifest's seal would. *timezone*: the
        zone the expired days were read in, stated in the seal (default: the sealer's)."""
        reader = self._reader
        async with self._lock:
            earlier = await self._read_whole()
            while todo := _not_recorded(expired, reader.chain):
                stated = reader.chain.retention_at(reader.chain.length)
                change = policy if stated is None or stated[1] != policy else None
                stating = timezone or self._timezone
                key = await self._append(partial(self._expiry_seal, todo, earlier, change, stating))
                if key is not None:
                    earlier = {}

    async def record_rekey(self, rekey: Rekey) -> str:
        """Record a finished key rotation in the chain (one seal); the seal's key. The first seal
        of an archive also seals every manifest written before seals were kept."""
        async with self._lock:
            earlier = await self._read_whole()
            while (key := await self._append(partial(self._rekey_seal, rekey, earlier))) is None:
                earlier = {}  # another archiver sealed first: the chain's first seal took the earlier manifests
            return key

    async def _read_whole(self) -> dict[str, str]:
        """Read the whole chain (once); the manifests written before seals were kept, which the
        archive's first seal takes in (none once a seal exists). Called under the lock."""
        if not self._reader.whole:
            await self._reader.read_all()
            self._read = True
        return {} if self._reader.listed else await self._manifests_before_seals()

    def _rekey_seal(self, rekey: Rekey, manifests: dict[str, str], number: int, head: Link | None) -> Seal:
        return Seal.new(number, manifests, head, self._clock.now(), timezone=self._timezone, rekeyed=(rekey,))

    def _manifest_seal(self, manifests: dict[str, str], number: int, head: Link | None) -> Seal:
        return Seal.new(number, manifests, head, self._clock.now(), timezone=self._timezone)

    def _expiry_seal(
        self,
        expired: tuple[Expiry, ...],
        manifests: dict[str, str],
        retention: str | None,
        timezone: str | None,
        number: int,
        head: Link | None,
    ) -> Seal:
        now = self._clock.now()
        return Seal.new(number, manifests, head, now, expired=expired, timezone=timezone, retention=retention)

    async def _append(self, make: Callable[[int, Link | None], Seal]) -> str | None:
        """Write the seal *make* gives for the chain's next number; its key, or None when another
        archiver took that number first (its seals are read: the caller looks again)."""
        reader = self._reader
        number = reader.chain.length + 1
        made = make(number, reader.chain.head)
        stated = reader.chain.timezone
        if made.timezone is not None and stated is not None and made.timezone != stated:
            # Whatever the writer was told at start (the seals unread then), a chain states one zone.
            raise ConfigError(
                [
                    f"At 'source.timezone': it names {made.timezone}, but the seals of {self._store.description} "
                    f"state that its days are filed in {stated}; set source.timezone: {stated} (or leave it out); "
                    "nothing was written"
                ]
            )
        raw = made.to_bytes()
        key = seal.seal_key(self._prefix, number)
        try:
            await put_bytes(self._store, key, raw, "application/json")
        except ObjectExists:  # another archiver sealed first: read its seals, take the next number
            await reader.read_newer()
            if reader.chain.length < number:  # listed, but unreadable: never guess a chain's head
                raise CallError(f"seal {key} exists but cannot be read; the day is sealed later") from None
            log.info("seal.number_taken", sequence=number)
            return None
        reader.add(key, raw)
        log.info(
            "seal.written",
            key=key,
            sequence=number,
            manifests=len(made.manifests),
            expired_days=len(made.expired),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
        return key

    def _unsealed(self, manifests: dict[str, str], fresh: Collection[str]) -> dict[str, str]:
        chain = self._reader.chain
        return {k: v for k, v in manifests.items() if k in fresh or not chain.sealed_by(k, v)}

    async def _manifests_before_seals(self) -> dict[str, str]:
        """Every manifest in the archive (the first seal covers the days closed before seals existed)."""
        found: dict[str, str] = {}
        limiter = anyio.CapacityLimiter(self._concurrency)

        async def day_manifests(folder: str) -> None:
            async with limiter:
                async for key in self._store.list_keys(folder + "manifest-sha256"):
                    found[key] = hashlib.sha256(await self._store.read(key, MANIFEST_LIMIT)).hexdigest()

        async with anyio.create_task_group() as tg:
            for day in await archive_days(self._store, self._prefix):
                tg.start_soon(day_manifests, keys.day_prefix(self._prefix, day))
        return found


def _not_recorded(expired: list[Expiry], chain: Chain) -> tuple[Expiry, ...]:
    """The records of *expired* the chain does not hold yet: a day not recorded at all, or one
    whose records do not name all of these manifests (only the others are recorded again)."""
    recorded = chain.expired()
    out = []
    for expiry in expired:
        if expiry.folder not in recorded:
            out.append(expiry)
            continue
        named = {link.key for link in recorded[expiry.folder][1].manifests}
        more = tuple(link for link in expiry.manifests if link.key not in named)
        if more:
            out.append(dataclasses.replace(expiry, manifests=more))
    return tuple(out)
