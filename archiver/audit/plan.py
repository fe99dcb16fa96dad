"""The dry run (``backfill --dry-run``): per day, what the API lists and what is already stored.

Reads the API and lists the bucket; writes nothing, not even the ledger.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from archiver.source.ccall import CcallClient
from archiver.source.listed import listed_calls
from archiver.store import Store
from archiver.store.listing import stored_call_ids


async def plan(
    client: CcallClient, store: Store, *, tz: ZoneInfo, prefix: str, since: datetime, until: datetime
) -> dict[date, dict[str, int]]:
    """The dry run: per day, the calls the API lists and how many are already stored.

    Reads the API and lists the bucket; writes nothing, not even the ledger.
    """
    days: dict[date, dict[str, int]] = {}
    stored: dict[date, set[str]] = {}
    async for day, cdr in listed_calls(client, tz, since, until):
        if day not in stored:
            stored[day] = await stored_call_ids(store, prefix, day)
        counts = days.setdefault(day, {"calls": 0, "recordings": 0, "stored": 0, "to_archive": 0})
        counts["calls"] += 1
        counts["recordings"] += int(cdr.has_recording)
        done = cdr.call_id in stored[day]
        counts["stored"] += int(done)
        counts["to_archive"] += int(not done)
    return dict(sorted(days.items()))
