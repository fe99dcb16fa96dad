"""The seal chain: what anchors the archive outside any one object. Pure.

When a day's manifest is written (a day closing, or an addendum), a *seal* records the
manifest's SHA-256 and the SHA-256 of the seal before it, under ``{prefix}/seals/{N}.json``
with N = 1, 2, 3, … in the order seals were written. Each seal is written create-only under the
next free number, so two archivers closing days at once cannot fork the chain: the loser of a
number takes the next one.

The chain's *head* (its last seal's number and SHA-256) is what an operator records elsewhere
(a ticket, an email, a second account). Rewriting any sealed manifest, consistently with the
recordings and sidecars it lists, changes that manifest's digest; hiding it means rewriting its
seal, which changes that seal's digest, and so every later seal up to the head. A head recorded
elsewhere no longer matches, even on a bucket without Object Lock.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from archiver.core.documents import parse_document

SCHEMA = "ccall-archiver/seal/v1"
FOLDER = "seals"
_NAME = re.compile(r"^(\d{8,})\.json$")


def folder(prefix: str) -> str:
    """Where the seals live: ``{prefix}/seals/``."""
    return f"{prefix}/{FOLDER}/" if prefix else f"{FOLDER}/"


def seal_key(prefix: str, sequence: int) -> str:
    return f"{folder(prefix)}{sequence:08d}.json"


def sequence_of(prefix: str, key: str) -> int | None:
    """The number of the seal stored under *key*, or None when *key* is not a seal's."""
    base = folder(prefix)
    if not key.startswith(base):
        return None
    match = _NAME.match(key[len(base) :])
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Link:
    """A seal's reference to another object: its key and the SHA-256 of its bytes."""

    key: str
    sha256: str


@dataclass(frozen=True)
class Expiry:
    """A day removed under the retention policy: recorded in a seal before anything of it is
    deleted, so that its sealed manifests' absence is accounted for."""

    day: str  # YYYY-MM-DD
    folder: str  # the day's key prefix
    manifests: tuple[Link, ...]  # what the day's manifests were, as they were when it expired
    policy: str  # retention.keep, as written: "2557d"
    at: str  # when it was recorded, UTC

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "folder": self.folder,
            "manifests": [{"key": m.key, "sha256": m.sha256} for m in self.manifests],
            "policy": self.policy,
            "at": self.at,
        }

    @classmethod
    def parse(cls, value: Any) -> Expiry:
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("day", "folder", "policy")):
            raise ValueError("an expiry record without day, folder and policy")
        manifests = value.get("manifests")
        if not isinstance(manifests, list):
            raise ValueError("an expiry record without its manifests")
        links = tuple(_link(m) for m in manifests)
        return cls(value["day"], value["folder"], links, value["policy"], str(value.get("at")))


@dataclass(frozen=True)
class Rekey:
    """A key rotation (``archiver rekey``) finished: every key object of the archive's encrypted
    recordings wrapped, from then on, to *recipients* (their set's fingerprint: the ``{set}`` in
    the key objects' names); how many keys there were, and how many this rotation wrote again."""

    at: str  # when it finished, UTC
    recipients: tuple[str, ...]  # age X25519 recipients (public keys)
    fingerprint: str
    keys: int
    rewrapped: int

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "recipients": list(self.recipients),
            "fingerprint": self.fingerprint,
            "keys": self.keys,
            "rewrapped": self.rewrapped,
        }

    @classmethod
    def parse(cls, value: Any) -> Rekey:
        if not isinstance(value, dict) or not isinstance(value.get("fingerprint"), str):
            raise ValueError("a rekey record without its recipients' fingerprint")
        recipients = value.get("recipients")
        if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
            raise ValueError("a rekey record without its recipients")
        keys, rewrapped = value.get("keys"), value.get("rewrapped")
        if not isinstance(keys, int) or not isinstance(rewrapped, int):
            raise ValueError("a rekey record without its counts")
        return cls(str(value.get("at")), tuple(recipients), value["fingerprint"], keys, rewrapped)


@dataclass(frozen=True)
class Seal:
    sequence: int
    sealed_at: str
    manifests: tuple[Link, ...]
    previous: Link | None  # None for the first seal
    expired: tuple[Expiry, ...] = ()  # days removed under retention (``archiver expire``)
    timezone: str | None = None  # the zone the archive's days are filed in, as its writer says
    retention: str | None = None  # the retention policy in force from this seal on (``2557d``)
    rekeyed: tuple[Rekey, ...] = ()  # key rotations finished (``archiver rekey``)

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "sequence": self.sequence,
            "sealed_at": self.sealed_at,
            "manifests": [{"key": m.key, "sha256": m.sha256} for m in self.manifests],
            "previous": None if self.previous is None else {"key": self.previous.key, "sha256": self.previous.sha256},
        }
        if self.expired:
            doc["expired"] = [e.to_json() for e in self.expired]
        if self.timezone is not None:
            doc["timezone"] = self.timezone
        if self.retention is not None:
            doc["retention"] = self.retention
        if self.rekeyed:
            doc["rekeyed"] = [r.to_json() for r in self.rekeyed]
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def new(
        cls,
        sequence: int,
        manifests: dict[str, str],
        previous: Link | None,
        now: datetime,
        expired: tuple[Expiry, ...] = (),
        *,
        timezone: str | None = None,
        retention: str | None = None,
        rekeyed: tuple[Rekey, ...] = (),
    ) -> Seal:
        return cls(
            sequence=sequence,
            sealed_at=utc_text(now),
            manifests=tuple(Link(k, v) for k, v in sorted(manifests.items())),
            previous=previous,
            expired=expired,
            timezone=timezone,
            retention=retention,
            rekeyed=rekeyed,
        )

    @classmethod
    def parse(cls, raw: bytes) -> Seal:
        """A seal from its bytes; ValueError saying what is wrong with them."""
        doc = parse_document(raw, SCHEMA)
        sequence, manifests, previous = doc.get("sequence"), doc.get("manifests"), doc.get("previous")
        if not isinstance(sequence, int) or not isinstance(manifests, list):
            raise ValueError("no sequence number or manifest list")
        expired, rekeyed = doc.get("expired", []), doc.get("rekeyed", [])
        if not isinstance(expired, list) or not isinstance(rekeyed, list):
            raise ValueError("an expired or rekeyed member that is not a list")
        return cls(
            sequence=sequence,
            sealed_at=str(doc.get("sealed_at")),
            manifests=tuple(_link(m) for m in manifests),
            previous=None if previous is None else _link(previous),
            expired=tuple(Expiry.parse(e) for e in expired),
            timezone=_text(doc.get("timezone")),
            retention=_text(doc.get("retention")),
            rekeyed=tuple(Rekey.parse(r) for r in rekeyed),
        )


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("a timezone or retention that is not text")
    return value


def _link(value: Any) -> Link:
    if not isinstance(value, dict) or not isinstance(value.get("key"), str) or not isinstance(value.get("sha256"), str):
        raise ValueError("a reference without key and sha256")
    return Link(value["key"], value["sha256"])


@dataclass
class Chain:
    """The seals of an archive as read, checked link by link (:func:`check_chain`)."""

    seals: dict[int, tuple[Seal, str]] = field(default_factory=dict)  # sequence -> (seal, sha256 of its bytes)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (key, what is wrong)
    prefix: str = ""

    @property
    def head(self) -> Link | None:
        """The last seal: its key and digest (None for an archive with no seal yet)."""
        if not self.seals:
            return None
        last = max(self.seals)
        return Link(seal_key(self.prefix, last), self.seals[last][1])

    @property
    def length(self) -> int:
        return max(self.seals, default=0)

    def sealed(self) -> dict[str, list[tuple[int, str]]]:
        """Every manifest a seal names: key -> [(seal number, the manifest's SHA-256 it states)].

        Worked out once: a chain is not changed after :func:`check_chain` built it.
        """
        return self._sealed

    @functools.cached_property
    def _sealed(self) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for sequence, (seal, _) in sorted(self.seals.items()):
            for link in seal.manifests:
                out.setdefault(link.key, []).append((sequence, link.sha256))
        return out

    def expired(self) -> dict[str, tuple[int, Expiry]]:
        """Every day recorded as expired: its folder -> (the number of the seal of its first
        record, that record). A later record of the same day (an expire that found more of it: an
        addendum written meanwhile) extends the first with the manifests it names."""
        out: dict[str, tuple[int, Expiry]] = {}
        for sequence, (seal, _) in sorted(self.seals.items()):
            for expiry in seal.expired:
                if expiry.folder not in out:
                    out[expiry.folder] = (sequence, expiry)
                    continue
                number, first = out[expiry.folder]
                known = {link.key for link in first.manifests}
                more = tuple(link for link in expiry.manifests if link.key not in known)
                out[expiry.folder] = (number, dataclasses.replace(first, manifests=first.manifests + more))
        return out

    def timezones(self) -> dict[str, list[int]]:
        """Each zone a seal states the days are filed in -> the numbers of the seals that state it."""
        out: dict[str, list[int]] = {}
        for sequence, (seal, _) in sorted(self.seals.items()):
            if seal.timezone is not None:
                out.setdefault(seal.timezone, []).append(sequence)
        return out

    @property
    def timezone(self) -> str | None:
        """The zone the last seal that states one says the archive's days are filed in."""
        stated = [(seal.sequence, seal.timezone) for seal, _ in self.seals.values() if seal.timezone is not None]
        return max(stated)[1] if stated else None

    def last_rekey(self) -> Rekey | None:
        """The latest key rotation the seals record (None: none)."""
        done = [r for _, (stated, _) in sorted(self.seals.items()) for r in stated.rekeyed]
        return done[-1] if done else None

    def retention_at(self, sequence: int) -> tuple[int, str] | None:
        """The retention policy in force at seal *sequence*: (the number of the seal that stated it,
        the policy), from the last statement at or before it; None when none was made."""
        stated = [(n, s.retention) for n, (s, _) in self.seals.items() if n <= sequence and s.retention is not None]
        return max(stated) if stated else None

    def sealed_by(self, key: str, digest: str) -> tuple[int, ...]:
        """The numbers of the seals that name the manifest *key* with the SHA-256 *digest*."""
        return tuple(n for n, stated in self.sealed().get(key, []) if stated == digest)

    def find(self, sha256: str) -> int | None:
        """The number of the seal whose bytes have this SHA-256 (a head recorded elsewhere)."""
        wanted = sha256.strip().lower()
        return next((n for n, (_, digest) in self.seals.items() if digest == wanted), None)


def check_chain(prefix: str, stored: Mapping[str, bytes | None]) -> Chain:
    """Read and check the seals in *stored* (key -> bytes; None: listed but unreadable).

    Each seal must parse, carry the number its key says, and name the seal before it with that
    seal's key and the SHA-256 of its bytes; the numbers run from 1 without a gap.
    """
    chain = Chain(prefix=prefix)
    for key, raw in sorted(stored.items()):
        number = sequence_of(prefix, key)
        if number is None:
            chain.problems.append((key, "an object in the seals folder that is not a seal"))
            continue
        if raw is None:
            chain.problems.append((key, "the seal cannot be read"))
            continue
        try:
            seal = Seal.parse(raw)
        except ValueError as exc:
            chain.problems.append((key, f"the seal does not parse: {exc}"))
            continue
        if seal.sequence != number:
            chain.problems.append((key, f"the seal says it is number {seal.sequence}"))
            continue
        chain.seals[number] = (seal, hashlib.sha256(raw).hexdigest())
    for number in range(1, chain.length + 1):
        key = seal_key(prefix, number)
        if number not in chain.seals:
            if not any(k == key for k, _ in chain.problems):
                chain.problems.append((key, f"seal {number} is missing: the chain is broken there"))
            continue
        seal = chain.seals[number][0]
        if number == 1:
            if seal.previous is not None:
                chain.problems.append((key, "the first seal names a previous one"))
            continue
        before = chain.seals.get(number - 1)
        expected = Link(seal_key(prefix, number - 1), before[1]) if before else None
        if seal.previous is None or (expected is not None and seal.previous != expected):
            chain.problems.append(
                (key, f"seal {number} does not name seal {number - 1} as it is now: a seal was rewritten")
            )
    return chain


def known_zone(name: str | None) -> ZoneInfo | None:
    """The zone *name* (a seal's, which anyone who writes to the bucket can set), or None where it
    is none or one this machine's time zone database does not know."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None
