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


class RefusingStore(FlakyStore):
    """Answers the probe at once, while the step keeps being refused (SlowDown on one prefix)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True


async def test_a_step_the_store_keeps_refusing_backs_off_while_the_probe_answers() -> None:
    """A store that answers the probe but refuses one write: the step waits, jittered and growing,
    before each new attempt (a handful in a second, not thousands), each wait logged once, and it
    fails as unavailable when the patience is spent."""
    store = RefusingStore()
    outage = StoreOutage(store, "p/_archiver/outage-probe", RetryPolicy(timeout=1.0, wait_initial=0.05, wait_max=0.2))  # type: ignore[arg-type]
    attempts = 0

    async def step() -> None:
        nonlocal attempts
        attempts += 1
        raise StoreUnavailable("s3://b (key 'p/2026/x.wav') answered SlowDown")

    with capture_logs() as logs, anyio.fail_after(5), pytest.raises(StoreUnavailable, match="SlowDown"):
        await outage.run(step)
    assert 3 <= attempts <= 20
    retries = [e for e in logs if e["event"] == "stamina.retry_scheduled"]
    # One line per wait, counting them: one before each attempt after the first, and perhaps a last
    # wait that ran into the patience, after which no attempt starts.
    assert attempts - 1 <= len(retries) <= attempts
    assert [r["retry_num"] for r in retries] == list(range(1, len(retries) + 1))
    assert all("SlowDown" in r["caused_by"] for r in retries)
    assert not [e for e in logs if e["event"].startswith("store.")]  # no outage: the store answered each probe
    assert store.probes <= attempts


async def test_a_step_that_passes_after_a_refusal_runs_once_more_after_a_wait() -> None:
    """A step refused once (a 409 on a contended key) runs again after its backoff and its result is returned."""
    store = RefusingStore()
    outage = StoreOutage(store, "p/_archiver/outage-probe", RetryPolicy(timeout=5, wait_initial=0.1, wait_max=0.1))  # type: ignore[arg-type]
    runs: list[float] = []

    async def step() -> str:
        runs.append(anyio.current_time())
        if len(runs) == 1:
            raise StoreUnavailable("conflict")
        return "stored"

    assert await outage.run(step) == "stored"
    assert len(runs) == 2
    assert runs[1] - runs[0] >= 0.05  # waited (jitter included) before the second attempt
