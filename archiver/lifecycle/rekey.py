"""``archiver rekey``: every recording's key wrapped again to today's ``age_recipients``.

When a person who held an identity leaves, or the escrow key changes, the key objects must stop
opening with the old identities. The recordings themselves are never re-written: only their keys
(each a few hundred bytes) are. The steps, a day of the keys store at a time:

1. **List** the day's key objects; a key already wrapped to today's recipient set (its name
   carries the set) is done: what an earlier run left of the old set is removed once today's
   wrapping opens to the key its name states (an object under that name proves nothing alone).
2. **Open** each other key with the identity file (which may hold the old identities and the
   new), check it is the key its name states (not another recording's, copied there), and
   **wrap** it again to today's recipients.
3. **Write** it create-only under the name of today's set; read it back (and, where the identity
   file holds one of today's recipients, open it again): only a key proved stored goes on.
4. **Remove** the versions of the old wrapping, every one: they no longer exist to be opened.

A run cut short anywhere is resumed by the next: a listing says which keys are done. A run that
finishes with every key done records the rotation in the seal chain (when, to which recipients,
how many keys), unless the chain's last rotation says so already and it had nothing to do; a key
it could not open is named, and no record is made until a run opens all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import anyio
import structlog

from archiver.archive.seal import Sealer
from archiver.audit.plaintext import NOT_OURS
from archiver.core import encryption, keyobjects, seal
from archiver.core.clock import Clock
from archiver.core.encryption import Identity, KeyUnreadable
from archiver.errors import CallError, ConfigError, ObjectMissing, collapse
from archiver.store.keys import KeyStore, put_new

log = structlog.get_logger("archiver.rekey")
_FOREIGN = "it holds another recording's key, not the one its name states (copied there?)"


@dataclass
class RekeyReport:
    recipients: tuple[str, ...]
    fingerprint: str
    dry_run: bool
    keys: int = 0  # recordings' keys found
    rewrapped: int = 0  # wrapped again by this run (with --dry-run: that would be)
    current: int = 0  # wrapped to today's recipients already
    leftovers: int = 0  # old wrappings an earlier run left beside a done key, removed now
    unchecked: int = 0  # written, read back, but not opened again: no identity here among today's recipients
    problems: list[str] = field(default_factory=list)  # keys not re-wrapped, and why
    seal_key: str | None = None  # the seal that records the rotation

    def as_dict(self) -> dict[str, object]:
        return {
            "recipients": list(self.recipients),
            "fingerprint": self.fingerprint,
            "dry_run": self.dry_run,
            "keys": self.keys,
            "rewrapped": self.rewrapped,
            "already_current": self.current,
            "leftovers_removed": self.leftovers,
            "not_opened_again": self.unchecked,
            "problems": self.problems,
            "recorded_in": self.seal_key,
        }


class Rekeyer:
    """Re-wraps the keys in *keys* to *recipients*, opening them with *identities*; *sealer*
    records the finished rotation."""

    def __init__(
        self,
        keys: KeyStore,
        identities: Sequence[Identity],
        recipients: tuple[str, ...],
        *,
        sealer: Sealer,
        clock: Clock,
        concurrency: int = 8,
    ) -> None:
        self._keys = keys
        self._identities = list(identities)
        self._recipients = recipients
        self._fingerprint = encryption.recipients_fingerprint(recipients)
        self._own = {encryption.public(i) for i in identities} & set(recipients)  # can we open what we write?
        self._sealer = sealer
        self._clock = clock
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def days(self) -> list[date]:
        """The days the keys store holds keys of (for a progress bar's length)."""
        return await self._keys.days()

    async def run(
        self, days: list[date], *, dry_run: bool = False, progress: Callable[[int], object] | None = None
    ) -> RekeyReport:
        """Re-wrap every key of *days*; record the rotation when every key is done. Raises
        ConfigError when the identity file opens none of the keys it tried."""
        report = RekeyReport(self._recipients, self._fingerprint, dry_run)
        for day in days:
            held = await self._keys.day(day)
            try:
                async with anyio.create_task_group() as tg:
                    for found in held.values():
                        for tag, objects in found.objects.items():
                            tg.start_soon(self._one, found.stem, tag, dict(objects), report)
            except BaseExceptionGroup as group:  # the store refused, or did not answer: the run stops here
                raise collapse(group) from None
            if progress is not None:
                progress(1)
        opened = report.current + report.rewrapped
        if report.problems and not opened and all(NOT_OURS in p for p in report.problems):
            raise ConfigError(
                [
                    f"At 'storage.encryption.identity_file': it opens none of the {len(report.problems)} key(s) tried: "
                    "give the identity of a recipient the keys are wrapped to now (it may hold several)"
                ]
            )
        if not dry_run and not report.problems and report.keys and await self._news(report):
            rekey = seal.Rekey(
                seal.utc_text(self._clock.now()), self._recipients, self._fingerprint, report.keys, report.rewrapped
            )
            report.seal_key = await self._sealer.record_rekey(rekey)
            log.info("rekey.recorded", seal=report.seal_key, keys=report.keys, rewrapped=report.rewrapped)
        return report

    async def _news(self, report: RekeyReport) -> bool:
        """Whether the run is news to the seal chain: it wrote keys, or the chain's last rotation
        was to another set (a run that wrote the last key and stopped before recording it)."""
        last = (await self._sealer.chain()).last_rekey()
        return bool(report.rewrapped or report.leftovers) or last is None or last.fingerprint != self._fingerprint

    async def _one(self, stem: str, tag: str, objects: dict[str, str], report: RekeyReport) -> None:
        """One recording's key (*objects*: its key objects by recipient set)."""
        report.keys += 1
        old = sorted(k for wrapped_to, k in objects.items() if wrapped_to != self._fingerprint)
        async with self._limiter:
            if self._fingerprint in objects:
                report.current += 1
                if old and not report.dry_run:
                    await self._finish(objects[self._fingerprint], tag, old, report)
                return
            if report.dry_run:
                report.rewrapped += 1
                return
            try:
                await self._rewrap(stem, tag, old, report)
            except CallError as exc:
                report.problems.append(str(exc))
                log.warning("rekey.key_failed", key=old[0], error=str(exc))

    async def _rewrap(self, stem: str, tag: str, old: list[str], report: RekeyReport) -> None:
        fresh = keyobjects.key_object_key(stem, tag, self._fingerprint)
        reasons = []
        for key_object in old:
            try:
                data, key = encryption.rewrap(await self._keys.read_key(key_object), self._identities, self._recipients)
            except ObjectMissing:
                continue  # removed since the listing (an erase): nothing to re-wrap
            except KeyUnreadable as exc:
                reasons.append(f"{key_object}: {exc}")
                continue
            if keyobjects.tag(encryption.public(key)) != tag:
                reasons.append(f"{key_object}: {_FOREIGN}")
                continue
            await put_new(self._keys, fresh, data)
            await self._proved(fresh, data, key, report)
            await self._remove(old, report)
            report.rewrapped += 1
            # A wrapping that held another's key went too (it opens with the old identities): said,
            # for someone put it there.
            report.problems += [f"removed, not re-wrapped: {r}" for r in reasons if r.endswith(_FOREIGN)]
            log.info("rekey.key_rewrapped", key_object=fresh, removed=len(old))
            return
        if reasons:
            raise CallError(f"the key {old[0]} was not re-wrapped: {'; '.join(reasons)}")

    async def _finish(self, current: str, tag: str, old: list[str], report: RekeyReport) -> None:
        """Remove the old wrappings an earlier run left beside the key's wrapping to today's set
        *current*, once that one opens (with an identity of today's recipients here) to the key
        its name states: an object under that name is not proof by itself (anyone may write one)."""
        why = None
        if not self._own:
            why = "no identity of today's recipients in storage.encryption.identity_file to open it"
        else:
            try:
                key = encryption.unwrap(await self._keys.read_key(current), self._identities)
            except ObjectMissing:
                why = "it is gone since the listing"
            except KeyUnreadable as exc:
                why = str(exc)
            else:
                if keyobjects.tag(encryption.public(key)) != tag:
                    why = _FOREIGN
        if why is not None:
            report.problems.append(f"the old wrapping(s) {', '.join(old)} are kept: {current} is not proved ({why})")
            log.warning("rekey.leftover_kept", key_object=current, why=why)
            return
        await self._remove(old, report)
        report.leftovers += 1

    async def _proved(self, fresh: str, data: bytes, key: Identity, report: RekeyReport) -> None:
        """The new key object is stored as written, and (where this identity file holds one of
        today's recipients) opens to the same key: only then do the old wrappings go."""
        stored = await self._keys.read_key(fresh)
        if stored != data:
            raise CallError(f"{fresh} reads back other bytes than were written; the old key is kept")
        if not self._own:
            report.unchecked += 1
            return
        try:
            again = encryption.unwrap(stored, self._identities)
        except KeyUnreadable as exc:
            raise CallError(f"{fresh} does not open again ({exc}); the old key is kept") from None
        if encryption.public(again) != encryption.public(key):
            raise CallError(f"{fresh} opens to another key than the one it was made from; the old key is kept")

    async def _remove(self, old: list[str], report: RekeyReport) -> None:
        removal = await self._keys.remove(old)
        if removal.held:
            report.problems.append(
                "the keys store keeps " + "; ".join(map(str, removal.held)) + ": the bucket of "
                "storage.encryption.keys_url must have no retention (an old wrapping stays readable)"
            )
