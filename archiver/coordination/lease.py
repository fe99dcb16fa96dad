"""One active daemon per source, coordinated through the bucket itself.

Several ``archiver run`` instances may point at the same bucket (for failover); exactly one of
them polls. The holder keeps a small lease object, ``{prefix}/_archiver/leases/{source}.json``,
written with conditional requests: ``If-None-Match: *`` to take a free lease, ``If-Match`` on
the ETag to renew it or to take over one that expired. S3's strong consistency and
conditional writes make this safe without a coordinator of our own: of two instances racing
for a lease, the store lets exactly one write win.

Two holders at once are still harmless (every archive write is create-only); the lease only
saves the duplicated work. Still, a holder cut off from the store cannot renew, and after ``ttl``
another instance takes the lease over: so the holder keeps a local deadline, ``ttl`` less a
margin from the moment it sent its last renewal that succeeded, and counts the lease as held
only until then (its daemon stops polling at that moment, whatever its requests are doing).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timedelta

import structlog

from archiver.core.clock import Clock
from archiver.errors import ObjectExists
from archiver.store import ControlStore

log = structlog.get_logger("archiver.coordination.lease")


class Lease:
    """A lease named *key* in *store*, held for *ttl* after each renewal."""

    def __init__(
        self, store: ControlStore, key: str, *, ttl: timedelta, clock: Clock, owner: str | None = None
    ) -> None:
        self._store = store
        self.key = key
        self.ttl = ttl
        self._clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._etag: str | None = None
        # This process's lease among processes that share an owner name (cloned hosts): only its own
        # is renewed as its own; another's, live, is waited for like any instance's.
        self._instance = uuid.uuid4().hex
        self._watched: tuple[str, datetime] | None = None  # another's lease: its ETag, and when first seen
        # Before another instance could take the lease over (clocks a little apart included).
        self.margin = ttl / 5
        self._valid_until: datetime | None = None

    @property
    def held(self) -> bool:
        """We hold the lease and it cannot have passed to another instance yet."""
        return self._etag is not None and self.seconds_left() > 0

    def seconds_left(self) -> float:
        """Seconds until the local deadline (0 when the lease is not ours)."""
        if self._etag is None or self._valid_until is None:
            return 0.0
        return max(0.0, (self._valid_until - self._clock.now()).total_seconds())

    def _held_from(self, sent: datetime, etag: str) -> None:
        self._etag = etag
        self._valid_until = sent + self.ttl - self.margin

    async def hold(self) -> bool:
        """Take the lease if it is free or expired, or renew it if ours. True when we hold it."""
        now = self._clock.now()
        body = self._body(now, now + self.ttl)
        if self._etag is not None:
            try:
                self._held_from(now, await self._store.put_conditional(self.key, body, if_match=self._etag))
            except ObjectExists:
                self._etag = None
                log.warning("lease.lost", key=self.key, owner=self.owner)
            else:
                return True
        try:
            self._held_from(now, await self._store.put_conditional(self.key, body, if_match=None))
        except ObjectExists:
            pass
        else:
            log.info("lease.acquired", key=self.key, owner=self.owner)
            return True
        current = await self._store.read_with_etag(self.key)
        if current is None:
            return False  # released between our two requests; next time
        data, etag = current
        holder, instance, expires = _parse(data)
        ours = holder == self.owner and instance == self._instance  # a renewal whose answer we lost
        if not ours and expires is not None and expires > now and not self._unchanged_for_a_ttl(etag, now):
            if expires - now > self.ttl + self.margin:  # stamped by a clock ahead of ours (or by hand)
                log.warning("lease.expiry_ahead", key=self.key, holder=holder, expires_at=expires.isoformat())
            log.debug("lease.standby", key=self.key, holder=holder, expires_at=expires.isoformat())
            return False
        try:
            self._held_from(now, await self._store.put_conditional(self.key, body, if_match=etag))
        except ObjectExists:
            return False  # another instance took it over first
        log.info("lease.renewed" if ours else "lease.taken_over", key=self.key, owner=self.owner, previous=holder)
        return True

    def _unchanged_for_a_ttl(self, etag: str, now: datetime) -> bool:
        """Whether the lease object has kept the ETag *etag* for longer than a ttl (and the
        margin) while this instance watched it: a holder renews every third of a ttl, so one that
        has not is gone, whatever expiry its object states (a clock far ahead, a hand-made object)."""
        if self._watched is None or self._watched[0] != etag:
            self._watched = (etag, now)
            return False
        return now - self._watched[1] > self.ttl + self.margin

    async def rescue(self, *, stale_for: timedelta) -> bool:
        """Take the lease only if it expired at least *stale_for* ago: nobody whose turn it is took
        it (the instances disagree about who is alive), so any instance may. True when taken."""
        if self._etag is not None:
            return await self.hold()
        current = await self._store.read_with_etag(self.key)
        if current is None:
            return False
        data, etag = current
        holder, _, expires = _parse(data)
        now = self._clock.now()
        if expires is not None and expires + stale_for > now and not self._unchanged_for_a_ttl(etag, now):
            return False
        try:
            self._held_from(
                now, await self._store.put_conditional(self.key, self._body(now, now + self.ttl), if_match=etag)
            )
        except ObjectExists:
            return False
        log.warning("lease.rescued", key=self.key, owner=self.owner, previous=holder)
        return True

    @staticmethod
    def read_holder(data: bytes) -> tuple[str | None, datetime | None]:
        """(owner, expires_at) of a lease object's bytes; (None, None) when unreadable."""
        owner, _, expires = _parse(data)
        return owner, expires

    async def release(self) -> None:
        """Let another instance take over at once (the lease is marked expired)."""
        if self._etag is None:
            return
        now = self._clock.now()
        try:
            await self._store.put_conditional(self.key, self._body(now, now), if_match=self._etag)
            log.info("lease.released", key=self.key, owner=self.owner)
        except ObjectExists:
            pass
        self._etag = None

    def _body(self, now: datetime, expires: datetime) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "instance": self._instance,
                "renewed_at": now.isoformat(),
                "expires_at": expires.isoformat(),
                "ttl_seconds": self.ttl.total_seconds(),
            }
        ).encode()


def _parse(data: bytes) -> tuple[str | None, str | None, datetime | None]:
    """(owner, instance, expires_at) of a lease object's bytes; Nones when unreadable."""
    try:
        doc = json.loads(data)
        instance = doc.get("instance")
        return (
            str(doc["owner"]),
            instance if isinstance(instance, str) else None,
            datetime.fromisoformat(doc["expires_at"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None, None  # an unreadable lease counts as expired
