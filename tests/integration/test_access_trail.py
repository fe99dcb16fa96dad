"""Reading the access trail: the days asked for, from a listing of those days alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from archiver.audit.access import AccessTrail, read_trail
from archiver.store.local import LocalStore
from tests.helpers import FakeClock

pytestmark = pytest.mark.anyio


class ListingFolder(LocalStore):
    """A folder that remembers the prefixes it was asked to list."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def list_keys(self, prefix: str) -> AsyncIterator[str]:
        self.listed.append(prefix)
        return super().list_keys(prefix)


async def test_a_bounded_read_lists_only_its_days(tmp_path: Path) -> None:
    store = ListingFolder(tmp_path)
    clock = FakeClock(datetime(2026, 11, 1, 9, tzinfo=UTC))
    trail = AccessTrail(store, "archive", clock)
    for day in (1, 2, 5):
        clock.moment = datetime(2026, 11, day, 9, tzinfo=UTC)
        trail.record(user="alice", action="view", call_id=f"call-{day}", remote="10.0.0.1", via="browse")
        await trail.flush()

    store.listed.clear()
    bounded = [e.call_id async for e in read_trail(store, "archive", date(2026, 11, 2), date(2026, 11, 4))]
    assert bounded == ["call-2"]
    assert store.listed == ["archive/_access/2026/11/02/", "archive/_access/2026/11/03/"]

    everything = [e.call_id async for e in read_trail(store, "archive", None, None)]
    assert everything == ["call-1", "call-2", "call-5"]
    since_only = [e.call_id async for e in read_trail(store, "archive", date(2026, 11, 2), None)]
    assert since_only == ["call-2", "call-5"]
