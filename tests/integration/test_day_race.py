"""Day files under racing writers: whatever the interleaving, every record of a closed day ends
in exactly one manifest, that manifest is sealed, and a record missed by them is reported."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

from archiver.archive.dayclose import DayCloser
from archiver.archive.seal import Sealer
from archiver.audit.verify import Verifier
from archiver.core import dayfiles
from archiver.simulator import Simulator
from archiver.state.ledger import Ledger
from archiver.store.local import LocalStore
from tests.helpers import TZ, FakeClock, assert_sealed, backfill, config_for, local_objects

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 29, tzinfo=UTC)
DAY = date(2026, 11, 1)


class GatedStore(LocalStore):
    """A folder store whose first write of a day file waits until the test opens the gate: the
    seam that decides which writer stores a set first."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reached = anyio.Event()
        self.gate = anyio.Event()

    async def put(self, key: str, body: IO[bytes], **kwargs: Any) -> None:
        if dayfiles.set_number(key.rsplit("/", 1)[-1]) is not None and not self.gate.is_set():
            self.reached.set()
            await self.gate.wait()
        await super().put(key, body, **kwargs)


def closer_for(store: LocalStore) -> DayCloser:
    ledger = Ledger.in_memory(store_identity="test")
    return DayCloser(
        store, ledger, prefix="", tz=TZ, close_after=timedelta(hours=1), sealer=Sealer(store, "", FakeClock(NOW))
    )


def open_day(root: Path) -> Path:
    """The archive of DAY as calls left it before its day was closed: records and recordings."""
    folder = root / "2026" / "11" / "01"
    for path in folder.iterdir():
        if dayfiles.set_number(path.name) is not None:
            path.unlink()
    shutil.rmtree(root / "seals")
    return folder


def manifested(objects: dict[str, bytes], folder: str) -> Counter[str]:
    """How many of the folder's manifests list each file."""
    counts: Counter[str] = Counter()
    for key, data in objects.items():
        if key.startswith(folder) and dayfiles.set_number(key[len(folder) :]) is not None and "manifest" in key:
            counts.update(list(dayfiles.parse_manifest(data.decode())))
    return counts


async def test_a_writer_whose_set_number_is_taken_files_its_calls_after_the_winners(
    sim: Simulator, tmp_path: Path
) -> None:
    """The winner lists the day before its last call was stored, the loser after; the winner
    stores set 1 first. The loser's call must still end in a sealed manifest, and neither writer
    may report more calls covered than the manifests in the bucket cover."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    folder = open_day(root)
    late = sorted(folder.glob("*.json"))[-1]
    aside = tmp_path / late.name
    late.rename(aside)

    winner, loser = GatedStore(root), GatedStore(root)
    covered: dict[str, int] = {}
    winner_done = anyio.Event()

    async def close(name: str, store: LocalStore, done: anyio.Event | None = None) -> None:
        covered[name] = await closer_for(store).write_day_files(DAY)
        if done is not None:
            done.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(close, "winner", winner, winner_done)
            await winner.reached.wait()  # the winner listed the day without the late call
            aside.rename(late)
            tg.start_soon(close, "loser", loser)
            await loser.reached.wait()  # the loser listed it with the late call
            winner.gate.set()
            await winner_done.wait()  # the winner's set 1 is stored
            loser.gate.set()

    objects = local_objects(root)
    records = {p.name for p in folder.glob("*.json")}
    counts = manifested(objects, "2026/11/01/")
    assert {name: counts[name] for name in records} == dict.fromkeys(records, 1)  # each in exactly one manifest
    assert covered == {"winner": len(records), "loser": len(records)}
    chain = assert_sealed(objects, "")
    sealed = {link.key for first, _ in chain.seals.values() for link in first.manifests}
    assert {k for k in objects if k.startswith("2026/11/01/manifest")} <= sealed
    report = await Verifier(LocalStore(root), "", clock=FakeClock(NOW)).verify([DAY])
    assert report.problems == []
    assert report.unmanifested == 0


async def test_four_writers_closing_one_day_at_once_cover_each_call_once(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    folder = open_day(root)
    results: list[int] = []

    async def close() -> None:
        results.append(await closer_for(LocalStore(root)).write_day_files(DAY))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(close)
    records = {p.name for p in folder.glob("*.json")}
    counts = manifested(local_objects(root), "2026/11/01/")
    assert {name: counts[name] for name in records} == dict.fromkeys(records, 1)
    assert results == [len(records)] * 4
    assert (await Verifier(LocalStore(root), "", clock=FakeClock(NOW)).verify([DAY])).problems == []


async def test_verify_reports_a_record_of_a_closed_day_that_no_manifest_covers(sim: Simulator, tmp_path: Path) -> None:
    """Stored before its day's files and still in none a day later (by the store's clock: its
    Last-Modified, a file's mtime): the day files missed it. A record stored within the day waits
    for the next addendum."""
    root = tmp_path / "archive"
    stored = datetime(2026, 11, 5, 9, tzinfo=UTC)
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(stored))
    folder = open_day(root)
    missed = sorted(folder.glob("*.json"))[0]
    aside = tmp_path / missed.name
    missed.rename(aside)
    await closer_for(LocalStore(root)).write_day_files(DAY)
    aside.rename(missed)

    soon = await Verifier(LocalStore(root), "", clock=FakeClock(stored + timedelta(hours=2))).verify([DAY])
    assert soon.problems == []
    assert soon.unmanifested >= 1

    two_days_ago = time.time() - timedelta(days=2).total_seconds()  # by the store's clock: a folder's is its mtime
    os.utime(missed, (two_days_ago, two_days_ago))
    late = await Verifier(LocalStore(root), "", clock=FakeClock(stored + timedelta(days=2))).verify([DAY])
    [problem] = late.problems
    assert problem.call_id == missed.stem
    assert problem.key == f"2026/11/01/{missed.name}"
    assert "in no manifest" in problem.what
    assert "archiver backfill --since 2026-11-01 --until 2026-11-02" in problem.what

    assert await closer_for(LocalStore(root)).write_day_files(DAY) == len(list(folder.glob("*.json")))
    assert (root / "2026/11/01/manifest-sha256.2.txt").exists()  # the addendum the command writes
    after = await Verifier(LocalStore(root), "", clock=FakeClock(stored + timedelta(days=2))).verify([DAY])
    assert after.problems == []
    assert after.unmanifested == 0


async def test_a_set_stored_by_a_writer_that_saw_more_is_adopted_not_called_foreign(
    sim: Simulator, tmp_path: Path
) -> None:
    """The other way round: the writer that loses set 1 listed the day before the late call's
    record was stored, the winner after, and the winner's CSV names it. The loser lists the day
    again before it calls that record foreign: a benign race, not "run archiver verify"."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    folder = open_day(root)
    late = sorted(folder.glob("*.json"))[-1]
    aside = tmp_path / late.name
    late.rename(aside)

    early, knowing = GatedStore(root), GatedStore(root)
    covered: dict[str, int] = {}
    knowing_done = anyio.Event()

    async def close(name: str, store: LocalStore, done: anyio.Event | None = None) -> None:
        covered[name] = await closer_for(store).write_day_files(DAY)
        if done is not None:
            done.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(close, "early", early)
            await early.reached.wait()  # listed the day without the late call
            aside.rename(late)
            tg.start_soon(close, "knowing", knowing, knowing_done)
            await knowing.reached.wait()  # listed it with the late call
            knowing.gate.set()
            await knowing_done.wait()  # its set 1 names the late call's record
            early.gate.set()

    objects = local_objects(root)
    records = {p.name for p in folder.glob("*.json")}
    counts = manifested(objects, "2026/11/01/")
    assert {name: counts[name] for name in records} == dict.fromkeys(records, 1)
    assert covered == {"early": len(records), "knowing": len(records)}
    assert_sealed(objects, "")
