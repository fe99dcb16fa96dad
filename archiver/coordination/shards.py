"""Large backfills split into day shards that several hosts share through the bucket.

Every host runs the same ``archiver backfill --since … --until …``. Hosts that start it while a
run of the range is under way join that *run* (``{prefix}/_archiver/shards/{range}/run.state``);
one started after the last run ended starts a new run, which reads every day again. Each day
is a shard: a host claims it with a lease object (``…/{range}/{day}.lease``), archives it, and
marks it done for the run (``…/{day}.done``). Days claimed by a live peer are skipped and
checked again later; a claim that stops being renewed (its host died) expires and is taken
over. Each host exits 0 only when every day of the range is done, by it or by its peers. No
call is archived twice: besides the claims, every archive write is create-only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver.coordination.lease import Lease
from archiver.core.clock import Clock
from archiver.core.outcome import DONE_STATUSES
from archiver.core.report import RunReport
from archiver.core.windows import plan_windows
from archiver.errors import ObjectExists, TransientError
from archiver.store import ControlStore

log = structlog.get_logger("archiver.coordination.shards")
_FIRST_PAUSE = 0.25  # seconds before a host with nothing left to claim looks at its peers' days again


class DayWorker(Protocol):
    """What a sharded backfill needs of the archiver: a day's backfill, and its progress display."""

    @property
    def stopping(self) -> bool: ...

    async def backfill(self, since: datetime, until: datetime, *, progress_base: RunReport | None = None) -> RunReport:
        """Archive the calls of ``[since, until)``; *progress_base* is added in what progress shows."""
        ...

    def report_progress(self, report: RunReport) -> None:
        """Show *report* as the progress so far."""
        ...


@dataclass
class ShardRun:
    """One host's share of a sharded backfill so far: what it has done and what is left."""

    run_id: str  # the run this host joined: only its done markers count
    total: RunReport
    waiting: list[tuple[datetime, datetime]]
    attempted: set[str] = field(default_factory=set)


async def sharded_backfill(
    archiver: DayWorker,
    store: ControlStore,
    *,
    control_prefix: str,
    source: str,
    since: datetime,
    until: datetime,
    tz: ZoneInfo,
    ttl: timedelta,
    clock: Clock,
    owner: str | None = None,
    wait: bool = True,
    resume: ShardRun | None = None,
    run_id: str | None = None,
) -> ShardRun:
    """Backfill ``[since, until)`` a day at a time, sharing the days with peers; see the module.

    With *wait* false it returns once every day left is claimed by a peer, instead of waiting for
    them (a host with several sources works on the next source meanwhile); *resume* carries on
    from such a return. *run_id* is the run joined when the command started (see :func:`join_run`);
    without it the run is joined now.
    """
    folder = range_folder(control_prefix, source, since, until)
    if resume is None:
        days = [(window.start, window.end) for window in plan_windows(since, until, tz)]  # a day each
        # A day done by a peer of this run is skipped; one done by an earlier, finished run is read
        # again, so that re-running a backfill still catches calls the PBX listed late (cheaply: it
        # skips every call already in the bucket).
        run_id = run_id or await join_run(store, folder, clock.now(), owner)
        resume = ShardRun(run_id=run_id, total=RunReport(windows=len(days)), waiting=list(days))
    run = resume
    total, waiting, attempted = run.total, run.waiting, run.attempted
    pause = _FIRST_PAUSE
    while waiting and not archiver.stopping:
        progressed = False
        for start, end in list(waiting):
            if archiver.stopping:
                break
            name = start.date().isoformat()
            done_calls = await _done_in(store, f"{folder}/{name}.done", run.run_id)
            if done_calls is not None:
                waiting.remove((start, end))
                total.windows_done += 1
                total.by_peers += done_calls  # archived by a peer of this run
                progressed = True
                continue
            if name in attempted:
                continue
            claim = Lease(store, f"{folder}/{name}.lease", ttl=ttl, clock=clock, owner=owner)
            if not await claim.hold():
                continue  # a peer works on it
            attempted.add(name)
            progressed = True
            report = await _with_claim(claim, functools.partial(archiver.backfill, start, end, progress_base=total))
            total.merge(report)
            if report.complete:
                await _mark_done(store, f"{folder}/{name}.done", report, clock.now(), run.run_id)
                waiting.remove((start, end))
                total.windows_done += 1
                log.info("shard.done", day=name, calls=report.done)
                archiver.report_progress(total)
            await claim.release()
        if progressed:
            pause = _FIRST_PAUSE
        elif waiting:
            if all(start.date().isoformat() in attempted for start, _ in waiting):
                break  # what is left failed here; its calls are in the report
            if not wait:
                return run  # peers hold the rest; the caller comes back with resume=run
            # Peers are on the rest: look again soon (a peer's last day may be seconds from
            # done), then less and less often, up to a third of the claim's lifetime.
            await anyio.sleep(pause)
            pause = min(pause * 2, ttl.total_seconds() / 3)
    total.interrupted = total.interrupted or bool(waiting)
    if not archiver.stopping:
        # Every day done, or what is left failed here: the run is over, and the next backfill of
        # the range starts a new one. Stopped by a signal, it stays open for a re-run to resume.
        await _finish_run(store, f"{folder}/run.state", run.run_id, clock.now())
    return run


def range_folder(control_prefix: str, source: str, since: datetime, until: datetime) -> str:
    """Where the control objects of one source's backfill of one range live."""
    range_id = hashlib.sha256(f"{source}|{since.isoformat()}|{until.isoformat()}".encode()).hexdigest()[:16]
    return f"{control_prefix}/shards/{range_id}"


async def join_run(store: ControlStore, folder: str, now: datetime, owner: str | None) -> str:
    """The id of the run of this range that is under way, or of a new one when the last ended (or
    there was none). Hosts that start the same backfill while one runs join it; a backfill started
    after the last one ended is a new run, and reads every day again. Join when the command starts:
    a host that reaches the range later (its other sources first) still belongs to the run it
    started in."""
    key = f"{folder}/run.state"
    for _ in range(5):
        found = await store.read_with_etag(key)
        current = _run_doc(found[0]) if found else None
        if current is not None and not current.get("finished_at"):
            log.info("shard.run_joined", run=current["run"])
            return str(current["run"])
        run_id = uuid.uuid4().hex[:16]
        body = json.dumps({"run": run_id, "started_at": now.isoformat(), "started_by": owner, "finished_at": None})
        try:
            await store.put_conditional(key, body.encode(), if_match=found[1] if found else None)
        except ObjectExists:
            continue  # a peer started one first: join that
        log.info("shard.run_started", run=run_id)
        return run_id
    raise TransientError(f"{key}: could not start or join a backfill run (it kept changing)")


async def _finish_run(store: ControlStore, key: str, run_id: str, now: datetime) -> None:
    """Mark the run finished (every day done), so that the next backfill of the range starts afresh."""
    found = await store.read_with_etag(key)
    current = _run_doc(found[0]) if found else None
    if found is None or current is None or current.get("run") != run_id or current.get("finished_at"):
        return  # finished by a peer already, or superseded
    body = json.dumps({**current, "finished_at": now.isoformat()}).encode()
    with contextlib.suppress(ObjectExists):  # a peer finished it first
        await store.put_conditional(key, body, if_match=found[1])
    log.info("shard.run_finished", run=run_id)


def _run_doc(data: bytes) -> dict[str, object] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("run"), str) else None


async def _with_claim(claim: Lease, work: Callable[[], Awaitable[RunReport]]) -> RunReport:
    """Run the day's backfill while renewing its claim."""
    result: list[RunReport] = []
    async with anyio.create_task_group() as tg:

        async def renew() -> None:
            while True:
                await anyio.sleep(claim.ttl.total_seconds() / 3)
                try:
                    await claim.hold()
                except TransientError as exc:
                    log.warning("shard.renewal_failed", key=claim.key, error=str(exc))

        tg.start_soon(renew)
        result.append(await work())
        tg.cancel_scope.cancel()
    return result[0]


async def _done_in(store: ControlStore, key: str, run_id: str) -> int | None:
    """How many calls the day's done marker counts, if this run wrote it; else None."""
    found = await store.read_with_etag(key)
    if found is None:
        return None
    try:
        doc = json.loads(found[0])
        run, calls = doc.get("run"), int(doc["calls"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return calls if run == run_id else None


async def _mark_done(store: ControlStore, key: str, report: RunReport, now: datetime, run_id: str) -> None:
    """Record the day done by this run, replacing an earlier run's record."""
    body = json.dumps(
        {
            "run": run_id,
            "finished_at": now.isoformat(),
            "calls": report.done + report.skipped,
            **{k: report.outcomes[k] for k in DONE_STATUSES},
        }
    ).encode()
    found = await store.read_with_etag(key)
    with contextlib.suppress(ObjectExists):  # a peer recorded it first: harmless
        await store.put_conditional(key, body, if_match=found[1] if found else None)
