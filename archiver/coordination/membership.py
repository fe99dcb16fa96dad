"""Several sources spread over several instances, through the bucket alone.

Each ``archiver run`` keeps a member object, ``{prefix}/_archiver/members/{id}.json`` (a lease
on its own presence, renewed every ``lease_ttl / 3``), and reads the others'. All instances
see the same live members, so all agree on one assignment without talking to each other:
sources sorted by id, members sorted by name, source *i* goes to member *i mod M*. Each source
still has its lease, so an instance polls only the sources it holds; it takes the leases of
its share and hands back the ones that are no longer its share. When a member dies its
object expires and the survivors' share grows to cover its sources.

Views can differ for a moment (a member just joined or just died): a lease that stays expired
for a further ``lease_ttl`` is then taken by whoever sees it (see ``Lease.rescue``), so no
source is left unpolled however the views disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta

import structlog

from archiver.coordination.lease import Lease
from archiver.core.clock import Clock
from archiver.store import ControlStore

log = structlog.get_logger("archiver.coordination.membership")


class Membership:
    """This instance's presence among the instances sharing a bucket, and its share of the sources."""

    def __init__(self, store: ControlStore, control_prefix: str, *, owner: str, ttl: timedelta, clock: Clock) -> None:
        self._store = store
        self._folder = f"{control_prefix}/members/"
        self.owner = owner
        self._clock = clock
        key = self._folder + hashlib.sha256(owner.encode()).hexdigest()[:16] + ".json"
        self._presence = Lease(store, key, ttl=ttl, clock=clock, owner=owner)
        self.members: tuple[str, ...] = (owner,)

    async def refresh(self) -> tuple[str, ...]:
        """Renew our presence and read who else is alive. Raises TransientError when the store does not answer."""
        await self._presence.hold()
        now = self._clock.now()
        live = {self.owner}
        async for key in self._store.list_keys(self._folder):
            found = await self._store.read_with_etag(key)
            if found is None:
                continue
            holder, expires = Lease.read_holder(found[0])
            if holder is not None and expires is not None and expires > now:
                live.add(holder)
        members = tuple(sorted(live))
        if members != self.members:
            log.info("members.changed", members=len(members), owners=list(members))
        self.members = members
        return members

    def share(self, source_ids: Sequence[str]) -> frozenset[str]:
        """The sources this instance should poll: the *i*-th source (by id) goes to the *i mod M*-th member."""
        me = self.members.index(self.owner)
        ordered = sorted(source_ids)
        return frozenset(sid for i, sid in enumerate(ordered) if i % len(self.members) == me)

    async def leave(self) -> None:
        """Mark our presence expired, so the others take over our sources at once."""
        await self._presence.release()
