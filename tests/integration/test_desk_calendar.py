"""The archive at a glance: the calendar of /days, each day's state and figures from its day files
alone, and the strip above it (the seal chain's head, the latest day closed, the trail's last
write). The day book is read in process, with a store that remembers what it read; the page is
served by a real browse."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest

from archiver.archive.seal import Sealer
from archiver.audit import daybook
from archiver.audit.daybook import DayBook
from archiver.lifecycle.expire import Expirer
from archiver.simulator import Simulator
from archiver.store.local import LocalStore
from archiver.store.seals import ChainReader
from tests.desk import archived
from tests.helpers import SINCE, TZ, UNTIL, Browse, FakeClock

pytestmark = pytest.mark.anyio

NOV_1, NOV_2 = date(2026, 11, 1), date(2026, 11, 2)


class ReadingFolder(LocalStore):
    """A folder that remembers every key read whole."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_keys: list[str] = []

    async def read(self, key: str, max_bytes: int = 1 << 20, *, version_id: str | None = None) -> bytes:
        self.read_keys.append(key)
        return await super().read(key, max_bytes, version_id=version_id)


def book_over(root: Path, clock: FakeClock) -> tuple[DayBook, ReadingFolder]:
    store = ReadingFolder(root)
    return DayBook(store, "", TZ, ChainReader(store, ""), anyio.Lock(), clock), store


def expected(sim: Simulator, day: date) -> Counter[str]:
    """What the simulator served that day, by the outcome the archive records."""
    calls = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.start.astimezone(TZ).date() == day]
    return Counter("archived" if c.serves_recording else "none" for c in calls)


async def test_a_days_figures_come_from_its_day_files_alone_and_are_read_once(sim: Simulator, tmp_path: Path) -> None:
    """Each day's calls by outcome, its manifests sealed, are read from calls.csv and the manifests
    (never a call's own objects), once: a second look reads nothing but the new seals."""
    await archived(sim, tmp_path)
    root = tmp_path / "archive"
    clock = FakeClock(datetime(2026, 11, 5, 9, tzinfo=UTC))
    book, store = book_over(root, clock)
    await book.refresh()
    for day in (NOV_1, NOV_2):
        summary = book.summaries[day]
        figures = summary.total()
        assert summary.state == daybook.SEALED
        assert (summary.sealed, len(summary.manifests)) == (1, 1)
        assert figures.calls == sum(expected(sim, day).values())
        assert Counter(figures.outcomes) == expected(sim, day)
        assert figures.cold is None  # STANDARD recordings: nothing known to be cold
    assert store.read_keys
    assert all(
        k.rsplit("/", 1)[-1] in ("calls.csv", "manifest-sha256.txt") or k.startswith("seals/") for k in store.read_keys
    )
    store.read_keys.clear()
    clock.advance(seconds=30)
    await book.refresh()
    assert store.read_keys == []  # within the minute, nothing is read again
    clock.advance(days=30)
    await book.refresh()
    store.read_keys.clear()
    clock.advance(minutes=5)
    await book.refresh()
    assert store.read_keys == []  # closed, sealed days older than a week are not read again
    assert book.reads == 2


async def test_late_calls_unsealed_manifests_addenda_and_expiry_change_a_days_state(
    sim: Simulator, tmp_path: Path
) -> None:
    """A record the day files do not list yet marks the day late; a manifest whose bytes no seal
    states marks it not sealed; an addendum sealed later is read at the next look; a day expired
    under retention is marked so, with its policy, once its folder is gone."""
    await archived(sim, tmp_path)
    root = tmp_path / "archive"
    clock = FakeClock(datetime(2026, 11, 5, 9, tzinfo=UTC))
    book, store = book_over(root, clock)
    await book.refresh()
    nov_1 = root / "2026" / "11" / "01"
    late = next(nov_1.glob("*.json"))
    (nov_1 / "0badcafe-0000-4000-8000-000000000001.json").write_bytes(late.read_bytes())
    manifest = root / "2026" / "11" / "02" / "manifest-sha256.txt"
    manifest.write_bytes(manifest.read_bytes() + b"\n")
    clock.advance(minutes=2)  # the last week's days are looked at again every minute
    await book.refresh()
    assert book.summaries[NOV_1].unlisted == 1
    assert book.summaries[NOV_2].state == daybook.UNSEALED

    sealer = Sealer(store, "", clock)
    expirer = Expirer(store, "", tz=TZ, keep=timedelta(days=30), policy="30d", clock=clock, sealer=sealer)
    clock.moment = datetime(2026, 12, 2, 12, tzinfo=UTC)  # 11-01 is past 30 days, 11-02 is not
    report = await expirer.run()
    assert [d.day for d in report.days] == [NOV_1]
    await book.refresh()
    expired = book.summaries[NOV_1]
    assert expired.state == daybook.EXPIRED
    assert expired.expiry is not None
    assert expired.expiry.policy == "30d"
    chain = await book.refresh()
    alone = await book.day(NOV_1, chain)  # a day's own page, made without the whole book
    assert alone is not None
    assert alone.state == daybook.EXPIRED
    assert await book.day(date(2026, 11, 3), chain) is None  # no folder, never expired
    again = await book.day(NOV_2, chain)
    assert again is not None
    assert again.state == daybook.UNSEALED


async def test_the_days_page_is_a_calendar_under_the_strip(sim: Simulator, tmp_path: Path) -> None:
    """/days: the strip names the seal chain's head (number and SHA-256), the latest day closed and
    when the access trail was last written; every day of November is a cell, the archived days
    coloured sealed with their number of calls, the others marked as having no folder."""
    config, calls = await archived(sim, tmp_path)
    root = tmp_path / "archive"
    server = Browse(config, tmp_path / "browse.log")
    try:
        httpx.get(f"{server.url}calls/{calls[0].uuid}", timeout=30).raise_for_status()
    finally:
        assert server.close() == 0  # the view is written to the trail
    server = Browse(config, tmp_path / "browse-2.log")
    try:
        page = httpx.get(f"{server.url}days", timeout=30)
        day = httpx.get(f"{server.url}days/2026-11-01", timeout=30)
    finally:
        assert server.close() == 0
    assert page.status_code == 200
    last_seal = sorted((root / "seals").glob("*.json"))[-1]
    head = json.loads(last_seal.read_text())
    head_sha = hashlib.sha256(last_seal.read_bytes()).hexdigest()
    strip = page.text.split('id="strip"')[1].split("</div></div>")[0]
    assert f"seal {head['sequence']}" in strip
    assert head_sha[:16] in strip
    assert "2026-11-02" in strip  # the latest day closed
    assert re.search(r"Access trail, last written</b>\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", strip), strip
    for number, when in ((1, NOV_1), (2, NOV_2)):
        cell = re.search(
            rf'<a class="d ([^"]+)" href="/days/{when}" title="([^"]+)"><b>{number}</b><i>(\d+)</i>', page.text
        )
        assert cell is not None, when
        assert cell.group(1).split()[0] == "sealed"
        assert int(cell.group(3)) == sum(expected(sim, when).values())
        assert f"{expected(sim, when)['archived']} recordings archived" in cell.group(2)
    assert '<span class="d nofolder" title="2026-11-03: no folder"><b>3</b></span>' in page.text
    assert "<script" not in page.text
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'id="summary"' in day.text
    assert "closed, every manifest sealed" in day.text
