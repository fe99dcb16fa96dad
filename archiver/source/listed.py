"""The calls the API lists for a period, each once: what the dry run and ``reconcile`` compare."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import date, datetime
from zoneinfo import ZoneInfo

from archiver.core.cdr import Cdr, parse_row
from archiver.core.windows import plan_windows
from archiver.source.ccall import CcallClient


async def listed_calls(
    client: CcallClient, tz: ZoneInfo, since: datetime, until: datetime
) -> AsyncGenerator[tuple[date, Cdr], None]:
    """Each call the API lists as started in ``[since, until)``, once, with the day it is filed under."""
    previous: set[str] = set()
    for window in plan_windows(since, until, tz):
        current: set[str] = set()  # neighbouring windows overlap by a minute; no further
        async for row in client.cdr_rows(window.query_from, window.query_to):
            cdr = parse_row(row, tz)
            if cdr.call_id in current or cdr.call_id in previous or not cdr.started_within((since, until)):
                continue
            current.add(cdr.call_id)
            yield cdr.day(window.day), cdr
        previous = current
