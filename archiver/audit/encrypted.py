"""A day's encrypted recordings checked against the keys store (``storage.encryption``).

Read after the day's records (:mod:`.recordings` checks each ciphertext as any recording):

- every encrypted recording a record names has its key: a key object of its tag (the recipient
  its record states), unless its call was crypto-shredded; one wrapped to other recipients than
  today's is counted (``rekey`` re-wraps it);
- a crypto-shredded recording's keys are gone, every one (not only those its erasure lists), and the erasure
  states the ciphertext digest its record stated (the ciphertext itself stays, checked as any
  recording is);
- with a :class:`~archiver.audit.plaintext.Decrypter` (``verify --decrypt``), every encrypted
  recording in the day (but a crypto-shredded one) decrypts to the plaintext its record states;
- a key no record names is history, not a problem: a run stopped between storing a key and its
  recording (it opens nothing stored), or before the recording's sidecar (``backfill`` finishes it).
"""

from __future__ import annotations

from typing import Any

import anyio

from archiver.audit.findings import Problem, VerifyReport
from archiver.audit.plaintext import NOT_OURS, Decrypter
from archiver.core import dayfiles, keyobjects, seal
from archiver.core.outcome import Encrypted, shredded_by_erasure
from archiver.errors import CallError, ObjectInColdStorage, collapse
from archiver.store import Store
from archiver.store.keys import KeyStore, RecordingKeys
from archiver.store.listing import DayListing


class KeyChecker:
    """Checks a day's keys in *keys*; *fingerprint*: today's recipient set (None: not counted);
    *decrypter*: also decrypts every recording (``verify --decrypt``)."""

    def __init__(
        self,
        store: Store,
        keys: KeyStore,
        *,
        fingerprint: str | None = None,
        decrypter: Decrypter | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._fingerprint = fingerprint
        self._decrypter = decrypter
        self._limiter = limiter or anyio.CapacityLimiter(4)
        self.opened = 0  # keys the identity file opened
        self.not_ours = 0  # keys it could not open because they are not wrapped to it

    async def check_day(
        self, listing: DayListing, docs: dict[str, tuple[str, dict[str, Any]]], report: VerifyReport
    ) -> None:
        """Check the keys of the day whose records (file name -> (digest, document)) are *docs*."""
        held = await self._keys.day(listing.day)
        named: set[tuple[str, str]] = set()
        shredded = await self._shredded(listing, docs, report)
        to_decrypt: list[dict[str, Any]] = []
        checked: set[str] = set()  # a recording two records name is checked once
        for name in sorted(docs):
            doc = docs[name][1]
            rec = dayfiles.mapping(doc.get("recording"))
            stated = Encrypted.of(rec) if rec.get("status") == "archived" else None
            if stated is None:
                continue
            key = str(rec.get("key"))
            stem = keyobjects.stem_of(self._keys.prefix, key)
            if stem is None:
                continue
            call_id = str(doc.get("call_id"))
            tag = keyobjects.tag(stated.recipient)
            named.add((stem, tag))
            if key in shredded or key not in listing.audio.get(call_id, []) or key in checked:
                continue  # shredded: its key must be gone; absent: the records' check names it
            checked.add(key)
            report.keys_checked += 1
            objects = held.get(stem, RecordingKeys(stem)).objects.get(tag, {})
            if not objects:
                report.problems.append(
                    Problem(
                        key,
                        f"an encrypted recording whose key is not in {self._keys.description} (the record names "
                        f"{stated.key_object}): it can no longer be decrypted",
                        call_id,
                    )
                )
                continue
            if self._fingerprint is not None and self._fingerprint not in objects:
                report.keys_stale += 1
            if self._decrypter is not None:
                to_decrypt.append(rec)
        self._strays(listing, held, named, report)
        if self._decrypter is not None:
            try:
                async with anyio.create_task_group() as tg:
                    for rec in to_decrypt:
                        tg.start_soon(self._decrypt, self._decrypter, rec, report)
            except BaseExceptionGroup as group:  # a store that stopped answering: verify stops, saying so
                raise collapse(group) from None

    async def _shredded(
        self, listing: DayListing, docs: dict[str, tuple[str, dict[str, Any]]], report: VerifyReport
    ) -> set[str]:
        """The recordings the day's erasures crypto-shredded: each one's key must be gone, every
        version of it (one behind a delete marker still opens the recording), and its erasure must
        state the ciphertext digest its record stated."""
        stated = {
            str(rec["key"]): rec.get("sha256")
            for _, doc in docs.values()
            if (rec := dayfiles.mapping(doc.get("recording"))).get("status") == "archived" and rec.get("key")
        }
        out: set[str] = set()
        for call_id, key in sorted(listing.sidecars.items()):
            found = docs.get(key[len(listing.folder) :])
            rec = dayfiles.mapping(found[1].get("recording")) if found else {}
            entries = shredded_by_erasure(rec)
            if entries:
                report.crypto_shredded += 1
            for entry in entries:
                out.add(entry.key)
                if entry.key in stated and stated[entry.key] != entry.sha256:
                    report.problems.append(
                        Problem(
                            entry.key, "the erasure record gives the recording another SHA-256 than its record", call_id
                        )
                    )
                # Any key of the recording left is one the erase missed or someone put back: the erase
                # destroys them all, not only those its record lists (which may be none).
                stem = keyobjects.stem_of(self._keys.prefix, entry.key)
                versions = await self._keys.versions_of(stem) if stem else []
                left = sorted({v.key for v in versions if not v.deleted})
                if left:
                    report.problems.append(
                        Problem(
                            entry.key,
                            f"crypto-shredded, but its key is still in {self._keys.description} ({', '.join(left)}): "
                            "an erase cut short (`archiver erase` again finishes it)",
                            call_id,
                        )
                    )
        return out

    def _strays(
        self, listing: DayListing, held: dict[str, RecordingKeys], named: set[tuple[str, str]], report: VerifyReport
    ) -> None:
        """Keys no record names: history (each opens nothing a record names)."""
        for stem, found in sorted(held.items()):
            for tag in sorted({*found.labels, *found.objects} - {t for s, t in named if s == stem}):
                name = stem.rsplit("/", 1)[-1]
                call_id = name.split(".rev", 1)[0]
                pending = call_id in listing.audio and call_id not in listing.sidecars
                why = (
                    "the key of a recording whose sidecar is not written yet (a run stopped before it; `backfill` "
                    "completes the call)"
                    if pending
                    else "a key whose recording was never stored (a run stopped between the key and the recording): "
                    "it opens nothing in the archive"
                )
                report.history.append(Problem(found.keys_of(tag)[0], why, call_id))

    async def _decrypt(self, decrypter: Decrypter, rec: dict[str, Any], report: VerifyReport) -> None:
        key = str(rec.get("key"))
        call_id = key.rsplit("/", 1)[-1].split(".", 1)[0]
        async with self._limiter:
            try:
                digest = await decrypter.check(self._store, rec)
            except ObjectInColdStorage:
                report.cold += 1
                return
            except CallError as exc:  # KeyObjectError, DecryptionError, a read that failed
                self.not_ours += NOT_OURS in str(exc)
                report.problems.append(Problem(key, str(exc), call_id))
                return
        self.opened += 1
        report.decrypted += 1
        report.bytes_decrypted += digest.size


def rekeys(chain: seal.Chain, report: VerifyReport) -> None:
    """Each key rotation the seals record, as history: when, to how many recipients, how many keys."""
    for number, (stated, _) in sorted(chain.seals.items()):
        for rekey in stated.rekeyed:
            report.history.append(
                Problem(
                    seal.seal_key(chain.prefix, number),
                    f"keys wrapped again on {rekey.at} to {len(rekey.recipients)} recipient(s) (set "
                    f"{rekey.fingerprint}): {rekey.rewrapped} of {rekey.keys} key(s) written again",
                )
            )
