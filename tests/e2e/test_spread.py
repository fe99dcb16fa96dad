"""Several sources in one config, spread over several instances through the bucket."""

from __future__ import annotations

import contextlib
import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from archiver.simulator import Dataset, Faults, Simulator
from tests.helpers import (
    Bucket,
    archive_objects,
    free_port,
    log_events,
    metric,
    reaping,
    start_archiver,
    terminate,
    wait_until,
    write_config,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SOURCES = ("hq", "hn", "dn", "ct")


def _config(
    tmp_path: Path,
    name: str,
    sims: list[Simulator],
    bucket: Bucket,
    *,
    sources: tuple[str, ...] = SOURCES,
    metrics_port: int | None = None,
) -> Path:
    raw: dict[str, Any] = {
        "sources": [
            {"name": source, "base_url": sim.url, "api_key": sim.api_key, "api_secret": sim.api_secret}
            for source, sim in zip(sources, sims, strict=True)
        ],
        "storage": {"url": bucket.url, "endpoint_url": bucket.endpoint},
        "state": {"path": str(tmp_path / f"{name}.sqlite3")},
        "poll": {"interval": "1s", "settle": "1s", "lookback": "5m"},
        "coordination": {"lease_ttl": "3s"},
    }
    if metrics_port is not None:
        raw["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return write_config(tmp_path / f"{name}.yaml", raw)


def _holders(bucket: Bucket) -> Counter[str]:
    """How many unexpired source leases each owner holds."""
    now = datetime.now(TZ)
    held: Counter[str] = Counter()
    for key, data in bucket.objects("archive/_archiver/leases/").items():
        doc = json.loads(data)
        if datetime.fromisoformat(doc["expires_at"]) > now:
            held[doc["owner"]] += 1
        assert key.endswith(".json")
    return held


def test_four_sources_split_two_and_two_and_the_survivor_takes_all_four(tmp_path: Path, bucket: Bucket) -> None:
    """Two `archiver run` with one four-source config: each polls two sources; after kill -9 of
    one, the other polls all four; every source's calls land under its own prefix, none twice,
    and the survivor's metrics count each source's calls apart."""
    datasets = [Dataset(seed=30 + i, calls_per_day=20000, max_duration=2, business_hours_share=0) for i in range(4)]
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    with reaping() as processes, contextlib.ExitStack() as stack:
        sims = [stack.enter_context(Simulator(d)) for d in datasets]
        processes["a"] = start_archiver("run", _config(tmp_path, "a", sims, bucket), log=logs["a"])
        wait_until(lambda: _holders(bucket) and max(_holders(bucket).values()) == 4, timeout=30)
        port = free_port()
        config_b = _config(tmp_path, "b", sims, bucket, metrics_port=port)
        processes["b"] = start_archiver("run", config_b, log=logs["b"])
        wait_until(lambda: sorted(_holders(bucket).values()) == [2, 2], timeout=30)
        wait_until(lambda: log_events(logs["b"]).count("poll.completed") >= 4, timeout=30)
        processes["a"].send_signal(signal.SIGKILL)
        processes["a"].wait()
        killed = datetime.now(TZ)
        wait_until(lambda: list(_holders(bucket).values()) == [4], timeout=30)
        polls = log_events(logs["b"]).count("poll.completed")
        wait_until(lambda: log_events(logs["b"]).count("poll.completed") >= polls + 12, timeout=30)
        scraped = (datetime.now(UTC), httpx.get(f"http://127.0.0.1:{port}/metrics").text, datetime.now(UTC))
        assert terminate(processes["b"]) == 0
        stopped = datetime.now(TZ)
    polled = {json.loads(line).get("source") for line in logs["b"].read_text().splitlines() if "poll.completed" in line}
    assert polled == set(SOURCES)  # each poll's line names its source
    events_b = log_events(logs["b"])
    assert "lease.handed_back" not in events_b  # b only ever gained sources
    assert "lease.handed_back" in log_events(logs["a"])  # a gave two back when b joined
    objects = archive_objects(bucket)  # and nothing was written twice
    for source, dataset in zip(SOURCES, datasets, strict=True):
        ended = [
            c
            for c in dataset.calls_between(killed - timedelta(minutes=5), stopped, stopped)
            if c.end < stopped - timedelta(seconds=4)
        ]
        assert ended
        for call in ended:
            if call.has_recording:
                assert f"archive/{source}/{call.start:%Y/%m/%d}/{call.uuid}.json" in objects, (source, call.uuid)
    prefixes = {k.split("/")[1] for k in objects}
    assert prefixes == set(SOURCES)  # each source under its own prefix, nothing at the top
    # b's metrics count each source's calls under its own label: as many as its log says it
    # archived for that source by the time of the scrape (a call counted during the scrape
    # may be logged a moment after it).
    before, exposition, after = scraped
    after += timedelta(seconds=1)
    archived = [
        (event["source"], datetime.fromisoformat(event["timestamp"]))
        for event in (json.loads(line) for line in logs["b"].read_text().splitlines() if line.startswith("{"))
        if event["event"] == "call.archived" and event["status"] == "archived"
    ]
    counted = {s: metric(exposition, "archiver_calls_total", source=s, outcome="archived") for s in SOURCES}
    for source in SOURCES:
        logged = [at for s, at in archived if s == source]
        assert len([at for at in logged if at < before]) <= counted[source] <= len([at for at in logged if at <= after])
        assert metric(exposition, "archiver_failures_total", source=source, **{"class": "store"}) == 0
        assert metric(exposition, "archiver_last_successful_poll_age_seconds", source=source) < 10
    assert sum(counted.values()) > 0
    with pytest.raises(AssertionError):
        metric(exposition, "archiver_calls_total", source="default")  # no unlabelled twin


def test_hosts_sharing_a_multi_source_backfill_spread_over_the_sources(tmp_path: Path, bucket: Bucket) -> None:
    """Two hosts, two sources of one day each: each host archives one source's day instead of
    both queueing on the first source; both exit 0; every call once under its source's prefix."""
    datasets = [Dataset(seed=50 + i, calls_per_day=150, max_duration=3) for i in range(2)]
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    span = ("--since", "2026-11-01", "--until", "2026-11-02")
    with reaping() as hosts, contextlib.ExitStack() as stack:
        sims = [stack.enter_context(Simulator(d, faults=Faults(recording_latency=0.25))) for d in datasets]
        for name, log in logs.items():
            config = _config(tmp_path, name, sims, bucket, sources=SOURCES[:2])
            hosts[name] = start_archiver("backfill", config, *span, log=log)
        for name in logs:
            assert hosts[name].wait(timeout=120) == 0, logs[name].read_text()[-3000:]
        now = sims[0].now()
    done_by = {name: log_events(logs[name]).count("shard.done") for name in logs}
    assert done_by == {"a": 1, "b": 1}  # one source's day each, at the same time
    objects = archive_objects(bucket)
    for source, dataset in zip(SOURCES, datasets, strict=False):
        calls = dataset.calls_between(datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 2, tzinfo=TZ), now)
        assert calls
        for call in calls:
            if call.has_recording:
                assert f"archive/{source}/{call.start:%Y/%m/%d}/{call.uuid}.json" in objects
