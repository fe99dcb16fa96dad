"""Several daemons on one bucket: one polls, the others stand by and take over when it dies."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

from archiver.coordination.lease import Lease
from archiver.core.clock import Clock
from archiver.store.s3_control import S3ControlStore
from tests.helpers import (
    Bucket,
    FakeClock,
    control_store,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.anyio
async def test_exactly_one_instance_holds_a_lease_until_it_expires(any_bucket: Bucket) -> None:
    """Conditional writes let one holder win; a standby takes over only after expiry; a release
    frees it (on RGW too, which matches If-Match only on the bare ETag)."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    stores = [control_store(any_bucket.endpoint, any_bucket.name) for _ in range(2)]
    a, b = lease(stores[0], clock, "a"), lease(stores[1], clock, "b")
    results: list[bool] = []

    async def race(contender: Lease) -> None:
        results.append(await contender.hold())

    async with anyio.create_task_group() as tg:
        tg.start_soon(race, a)
        tg.start_soon(race, b)
    assert sorted(results) == [False, True]
    holder, standby = (a, b) if a.held else (b, a)
    clock.advance(seconds=20)
    assert await holder.hold()  # renewed: expires 30 s from now
    clock.advance(seconds=20)
    assert not await standby.hold()
    clock.advance(seconds=31)
    assert await standby.hold()  # expired: taken over
    assert not await holder.hold()  # and the old holder learns it lost it
    await standby.release()
    assert await holder.hold()  # released: free at once
    for store in stores:
        await store.aclose()


def lease(store: S3ControlStore, clock: Clock, owner: str) -> Lease:
    return Lease(
        store,
        "p/_archiver/leases/x.json",
        ttl=timedelta(seconds=30),
        clock=clock,
        owner=owner,
    )
