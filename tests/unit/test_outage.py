"""A store outage is waited out behind one probe, for as long as the patience allows."""

from __future__ import annotations

import anyio
import pytest
from structlog.testing import capture_logs

from archiver.archive.outage import StoreOutage
from archiver.errors import StoreUnavailable
from archiver.retry import RetryPolicy
from archiver.store import ObjectInfo

pytestmark = pytest.mark.anyio


class FlakyStore:
    """Answers HEAD (the probe) only once *up* is set; counts the probes."""

    description = "memory://flaky"

    def __init__(self) -> None:
        self.up = False
        self.probes = 0

    async def head(self, key: str) -> ObjectInfo | None:
        self.probes += 1
        if not self.up:
            raise StoreUnavailable("memory://flaky did not answer")
        return None


async def test_every_worker_waits_for_one_probe_then_redoes_its_step() -> None:
    """Five steps fail while the store is down; one worker probes, the others wait for it, and
    each step runs again once the store answers."""
    store = FlakyStore()
    outage = StoreOutage(store, "p/_archiver/outage-probe", RetryPolicy(timeout=10, wait_initial=0.01, wait_max=0.02))  # type: ignore[arg-type]
    runs: list[int] = []

    async def step(n: int) -> int:
        runs.append(n)
        if not store.up:
            raise StoreUnavailable("down")
        return n

    results: list[int] = []

    async def worker(n: int) -> None:
        results.append(await outage.run(lambda: step(n)))

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(worker, n)
            await anyio.sleep(0.1)
            store.up = True
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert sorted(runs) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # each step: once failed, once done
    events = [e["event"] for e in logs]
    assert [e for e in events if e.startswith("store.")] == ["store.outage_waiting", "store.answered_again"]
    assert "stamina.retry_scheduled" in events  # the probe's retries are logged (and counted) as any retry


async def test_past_its_patience_the_step_fails_as_unavailable() -> None:
    """A store that stays down fails the step once the patience has passed; nothing loops on."""
    store = FlakyStore()
    outage = StoreOutage(store, "p/_archiver/outage-probe", RetryPolicy(timeout=0.2, wait_initial=0.01, wait_max=0.05))  # type: ignore[arg-type]

    async def step() -> None:
        raise StoreUnavailable("down")

    with anyio.fail_after(5), pytest.raises(StoreUnavailable):
        await outage.run(step)
    assert 1 < store.probes < 20
