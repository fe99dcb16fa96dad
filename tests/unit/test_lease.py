"""Leases over a control store: one holder at a time, renewal, hand-over, expiry and rescue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver.coordination.lease import Lease
from archiver.coordination.membership import Membership
from archiver.errors import StoreUnavailable
from tests.fakes import MemoryControlStore
from tests.helpers import FakeClock

pytestmark = pytest.mark.anyio
TTL = timedelta(seconds=30)
KEY = "p/_archiver/leases/x.json"


def lease(store: MemoryControlStore, clock: FakeClock, owner: str) -> Lease:
    return Lease(store, KEY, ttl=TTL, clock=clock, owner=owner)


async def test_one_instance_holds_a_lease_and_renews_it() -> None:
    """The first to ask holds the lease; a second stands by while it is renewed."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    assert await a.hold()
    assert not await b.hold()
    clock.advance(seconds=20)
    assert await a.hold()  # renewed before it expired
    clock.advance(seconds=20)
    assert not await b.hold()  # 40 s after taking it, but 20 s after the renewal


async def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it() -> None:
    """A holder that stopped renewing loses the lease to the next one who asks."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    assert await a.hold()
    clock.advance(seconds=31)
    assert await b.hold()
    assert not await a.hold()  # its renewal fails on the ETag, and it does not take it back
    assert not a.held


class Unreachable(MemoryControlStore):
    """A control store that can be cut off: every request then fails as a store outage does."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False

    async def put_conditional(self, key: str, data: bytes, *, if_match: str | None) -> str:
        if self.cut:
            raise StoreUnavailable("memory://control did not answer")
        return await super().put_conditional(key, data, if_match=if_match)


async def test_a_holder_that_cannot_renew_stops_counting_the_lease_as_held_before_it_expires() -> None:
    """Renewals that fail leave the lease held only until ttl less the margin after the last one
    that succeeded, before any other instance may take it; once it renews again it holds it."""
    store, clock = Unreachable(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    assert await a.hold()
    assert a.seconds_left() == (TTL - a.margin).total_seconds()
    store.cut = True
    clock.advance(seconds=10)
    with pytest.raises(StoreUnavailable):
        await a.hold()
    assert a.held  # 10 s in: still inside the lease
    clock.advance(seconds=14)
    assert not a.held  # 24 s: the margin before another could take it over (at 30 s)
    assert a.seconds_left() == 0
    store.cut = False
    assert not await b.hold()  # nobody else has it yet either
    assert await a.hold()  # renewed on its own ETag: held again
    assert a.seconds_left() == (TTL - a.margin).total_seconds()


async def test_a_released_lease_is_free_at_once() -> None:
    """Release marks the lease expired, so a standby takes it without waiting for the TTL."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    assert await a.hold()
    await a.release()
    assert await b.hold()


async def test_rescue_takes_only_a_lease_that_stayed_expired() -> None:
    """An instance whose turn it is not takes a lease only once it has been expired for a further TTL."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    assert await a.hold()
    clock.advance(seconds=31)
    assert not await b.rescue(stale_for=TTL)  # expired, but only just: its rightful taker may be on the way
    clock.advance(seconds=30)
    assert await b.rescue(stale_for=TTL)


async def test_an_unreadable_lease_counts_as_expired() -> None:
    """Garbage under the lease's key does not lock every instance out."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    await store.put_conditional(KEY, b"not json", if_match=None)
    assert await lease(store, clock, "a").hold()


@pytest.mark.parametrize(
    ("members", "sources", "shares"),
    [
        (["a"], ["s1", "s2", "s3"], {"a": {"s1", "s2", "s3"}}),
        (["a", "b"], ["s1", "s2", "s3", "s4"], {"a": {"s1", "s3"}, "b": {"s2", "s4"}}),
        (["b", "a"], ["s4", "s3", "s2", "s1"], {"a": {"s1", "s3"}, "b": {"s2", "s4"}}),  # order does not matter
        (["a", "b", "c"], ["s1", "s2"], {"a": {"s1"}, "b": {"s2"}, "c": set()}),
    ],
)
async def test_live_members_split_the_sources_the_same_way_everywhere(
    members: list[str], sources: list[str], shares: dict[str, set[str]]
) -> None:
    """Every member computes the same assignment from the same live members: source i to member i mod M."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    instances = [Membership(store, "p/_archiver", owner=m, ttl=TTL, clock=clock) for m in members]
    for each in instances:
        await each.refresh()
    for each in instances:
        await each.refresh()  # now every one sees all the others
        assert each.share(sources) == shares[each.owner]


async def test_a_member_that_stops_renewing_drops_out_and_the_rest_take_its_sources() -> None:
    """When a member's presence expires, the survivors' shares cover every source."""
    store, clock = MemoryControlStore(), FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    a = Membership(store, "p/_archiver", owner="a", ttl=TTL, clock=clock)
    b = Membership(store, "p/_archiver", owner="b", ttl=TTL, clock=clock)
    await b.refresh()
    assert await a.refresh() == ("a", "b")
    clock.advance(seconds=31)  # b died
    assert await a.refresh() == ("a",)
    assert a.share(["s1", "s2"]) == {"s1", "s2"}
