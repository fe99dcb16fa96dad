"""Seals are written once per manifest, by however many archivers, into one unbroken chain."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from archiver.archive.dayclose import DayCloser
from archiver.archive.seal import Sealer
from archiver.audit.verify import Verifier
from archiver.core import seal
from archiver.simulator import Dataset, Simulator
from archiver.state.ledger import Ledger
from archiver.store.local import LocalStore
from archiver.store.seals import read_chain
from tests.helpers import TZ, FakeClock, assert_sealed, backfill, config_for, local_objects

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 29, tzinfo=UTC)


async def test_archivers_sealing_at_once_take_numbers_in_turn(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    sealers = [Sealer(store, "p", FakeClock(NOW)) for _ in range(4)]

    async def seal_days(sealer: Sealer, offset: int) -> None:
        for day in range(offset, 20, 4):
            await sealer.seal({f"p/2026/11/{day + 1:02d}/manifest-sha256.txt": f"{day:064x}"})

    async with anyio.create_task_group() as tg:
        for offset, sealer in enumerate(sealers):
            tg.start_soon(seal_days, sealer, offset)
    chain = await read_chain(store, "p")
    assert chain.problems == []
    assert chain.length == 20  # one seal each, no number taken twice, no gap
    assert len(chain.sealed()) == 20
    await sealers[0].seal({"p/2026/11/01/manifest-sha256.txt": f"{0:064x}"})  # sealed already: nothing new
    assert (await read_chain(store, "p")).length == 20


async def test_closing_a_day_seals_manifests_no_seal_names_yet(sim: Simulator, tmp_path: Path) -> None:
    """An archive written before seals existed (or a run killed between manifest and seal): the
    next day closed seals every manifest no seal names, in one first seal."""
    root = tmp_path / "archive"
    config = config_for(sim, f"file://{root}", tmp_path)
    await backfill(config)
    shutil.rmtree(root / "seals")
    store = LocalStore(root)
    ledger = Ledger.in_memory(store_identity="test")
    closer = DayCloser(
        store, ledger, prefix="", tz=TZ, close_after=timedelta(hours=1), sealer=Sealer(store, "", FakeClock(NOW))
    )
    await closer.write_day_files(datetime(2026, 11, 1, tzinfo=TZ).date())  # nothing new to list: only seals
    objects = local_objects(root)
    chain = assert_sealed(objects, "")
    assert chain.length == 1
    [(first, _)] = chain.seals.values()
    assert {m.key for m in first.manifests} == {"2026/11/01/manifest-sha256.txt", "2026/11/02/manifest-sha256.txt"}
    digest = hashlib.sha256(objects["2026/11/02/manifest-sha256.txt"]).hexdigest()
    assert seal.Link("2026/11/02/manifest-sha256.txt", digest) in first.manifests


async def test_a_day_closed_on_a_long_chain_reads_only_its_head(tmp_path: Path) -> None:
    """Sealing a manifest just written costs a listing and one read, however long the chain."""
    store = LocalStore(tmp_path)
    await Sealer(store, "p", FakeClock(NOW)).seal(
        {f"p/2026/10/{d:02d}/manifest-sha256.txt": f"{d:064x}" for d in range(1, 2)}
    )
    for day in range(2, 30):  # a chain of 29 seals, written by earlier runs
        await Sealer(store, "p", FakeClock(NOW)).seal(
            {f"p/2026/10/{day:02d}/manifest-sha256.txt": f"{day:064x}"},
            fresh={f"p/2026/10/{day:02d}/manifest-sha256.txt"},
        )
    counting = CountingStore(tmp_path)
    key = "p/2026/11/01/manifest-sha256.txt"
    await Sealer(counting, "p", FakeClock(NOW)).seal({key: "f" * 64}, fresh={key})
    assert counting.reads == ["p/seals/00000029.json"]
    chain = await read_chain(store, "p")
    assert chain.problems == []
    assert chain.length == 30
    # A manifest that may be sealed already (an interrupted run) reads the whole chain instead.
    counting.reads.clear()
    await Sealer(counting, "p", FakeClock(NOW)).seal({key: "f" * 64})
    assert len(counting.reads) == 30
    assert (await read_chain(store, "p")).length == 30  # sealed already: nothing new


class CountingStore(LocalStore):
    """A folder store that records which keys were read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    async def read(self, key: str, max_bytes: int = 1 << 20, *, version_id: str | None = None) -> bytes:
        self.reads.append(key)
        return await super().read(key, max_bytes, version_id=version_id)


class LateStore(LocalStore):
    """A folder store whose first listing of each folder misses what *late* names: objects written
    while a verify read the archive (a day closing, a call being archived)."""

    def __init__(self, root: Path, late: set[str]) -> None:
        super().__init__(root)
        self._late = late
        self._listed: set[str] = set()

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        first = prefix not in self._listed
        self._listed.add(prefix)
        async for key in super().list_keys(prefix):
            if not (first and key in self._late):
                yield key


async def test_verify_running_beside_the_archiver_does_not_report_what_it_is_writing(tmp_path: Path) -> None:
    """A sidecar written after the day was listed, a seal written after the chain was read: both
    are looked for again before anything is reported."""
    root = tmp_path / "archive"
    with Simulator(Dataset(seed=3, calls_per_day=300, max_duration=3, business_hours_share=0)) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)
        await backfill(config)  # two closed days
        now = datetime.now(TZ)
        await backfill(config, now - timedelta(hours=6), now - timedelta(minutes=2))  # and calls of a day still open
    objects = local_objects(root)
    unclosed = [k for k in objects if k.endswith(".json") and k.replace(".json", ".wav") in objects]
    unclosed = [k for k in unclosed if not (root / k).parent.joinpath("manifest-sha256.txt").exists()]
    if not unclosed:
        pytest.skip("the simulator ended no recorded call in the last six hours")
    sidecar = unclosed[0]
    late = {sidecar, *(k for k in objects if k.startswith("seals/"))}
    report = await Verifier(LateStore(root, late), "").verify(None)
    assert report.problems == []
    (root / sidecar).unlink()  # gone for good: that is reported
    report = await Verifier(LocalStore(root), "").verify(None)
    assert any("without its sidecar" in p.what for p in report.problems)


async def test_verify_names_a_sealed_day_whose_whole_folder_is_gone(sim: Simulator, tmp_path: Path) -> None:
    """A whole day deleted leaves no listing to compare with its seal; the seal still names it."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    assert (await Verifier(LocalStore(root), "").verify(None)).problems == []
    shutil.rmtree(root / "2026" / "11" / "02")
    for days in (None, [date(2026, 11, 2)]):
        report = await Verifier(LocalStore(root), "").verify(days)
        assert [(p.key, p.what) for p in report.problems] == [
            ("2026/11/02/manifest-sha256.txt", "a sealed manifest is not in the archive any more")
        ]
