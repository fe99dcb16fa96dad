"""Seals are written once per manifest, by however many archivers, into one unbroken chain."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from archiver.archive.dayclose import DayCloser
from archiver.archive.seal import Sealer
from archiver.core import seal
from archiver.simulator import Simulator
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

    async def read(self, key: str, max_bytes: int = 1 << 20) -> bytes:
        self.reads.append(key)
        return await super().read(key, max_bytes)
