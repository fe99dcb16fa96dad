"""Several daemons on one bucket: one polls, the others stand by and take over when it dies."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

from archiver.simulator import Dataset, Faults, Simulator
from tests.helpers import (
    Bucket,
    MotoServer,
    ToggleProxy,
    archive_objects,
    free_port,
    is_sidecar,
    log_events,
    make_bucket,
    metric,
    reaping,
    start_archiver,
    terminate,
    wait_until,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def test_a_standby_daemon_takes_over_when_the_holder_is_killed(tmp_path: Path, bucket: Bucket) -> None:
    """Two `archiver run` on one bucket: one polls; after kill -9 the other archives on; nothing
    twice. /metrics says who holds the lease, and counts the takeover."""
    dataset = Dataset(seed=9, calls_per_day=30000, max_duration=2, business_hours_share=0)
    ports = {"a": free_port(), "b": free_port()}

    def lease(name: str, sample: str = "archiver_lease_held", **labels: str) -> float:
        return metric(httpx.get(f"http://127.0.0.1:{ports[name]}/metrics").text, sample, source="default", **labels)

    with reaping() as processes, Simulator(dataset) as sim:
        logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
        processes["a"] = _start(tmp_path, "a", sim, bucket, logs["a"], metrics_port=ports["a"])
        wait_until(lambda: "lease.acquired" in log_events(logs["a"]))
        processes["b"] = _start(tmp_path, "b", sim, bucket, logs["b"], metrics_port=ports["b"])
        wait_until(lambda: "daemon.store_answered" in log_events(logs["b"]))
        polls = log_events(logs["a"]).count("poll.completed")
        wait_until(lambda: log_events(logs["a"]).count("poll.completed") >= polls + 2, timeout=30)
        assert "poll.completed" not in log_events(logs["b"])  # b stood by while a polled
        assert (lease("a"), lease("b")) == (1, 0)
        assert lease("b", "archiver_lease_changes_total", change="taken") == 0
        processes["a"].send_signal(signal.SIGKILL)
        processes["a"].wait()
        killed = datetime.now(TZ)
        wait_until(lambda: "poll.completed" in log_events(logs["b"]), timeout=30)
        took_over = datetime.now(TZ)
        polls = log_events(logs["b"]).count("poll.completed")
        wait_until(lambda: log_events(logs["b"]).count("poll.completed") >= polls + 3, timeout=30)  # >= 3 s
        assert lease("b") == 1
        assert lease("b", "archiver_lease_changes_total", change="taken") == 1
        assert terminate(processes["b"]) == 0
        stopped = datetime.now(TZ)
    assert "lease.taken_over" in log_events(logs["b"])
    assert took_over - killed < timedelta(seconds=3 + 1 + 10)  # lease ttl + poll interval + slack
    _assert_recorded_calls_archived(bucket, dataset, killed - timedelta(minutes=5), stopped, settle=3)


def test_a_holder_cut_off_from_the_store_stops_polling_before_a_standby_takes_over(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    """The holder loses the store (not the API) for longer than the lease's ttl: it stops polling
    at its local deadline, the standby takes the lease over once it expired and polls, and at no
    moment do both poll; with the store back, the first learns it lost the lease and stands by."""
    bucket = make_bucket(moto_server.endpoint)
    proxy = ToggleProxy(moto_server.port).start()
    dataset = Dataset(seed=9, calls_per_day=30000, max_duration=2, business_hours_share=0)
    try:
        with reaping() as processes, Simulator(dataset) as sim:
            logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
            processes["a"] = _start(tmp_path, "a", sim, bucket, logs["a"], endpoint=proxy.endpoint, level="debug")
            wait_until(lambda: log_events(logs["a"]).count("poll.completed") >= 2, timeout=30)
            processes["b"] = _start(tmp_path, "b", sim, bucket, logs["b"], level="debug")
            wait_until(lambda: "daemon.store_answered" in log_events(logs["b"]))
            proxy.down()
            wait_until(lambda: "poll.completed" in log_events(logs["b"]), timeout=30)  # b took over
            time.sleep(3)
            proxy.up()
            wait_until(lambda: "lease.lost" in log_events(logs["a"]), timeout=30)
            time.sleep(2)
            for process in processes.values():
                assert terminate(process) == 0
    finally:
        proxy.stop()
    assert "lease.expiring_unrenewed" in log_events(logs["a"]) or "lease.lost" in log_events(logs["a"])
    assert "lease.taken_over" in log_events(logs["b"])
    polls_a, polls_b = _polls(logs["a"]), _polls(logs["b"])
    assert polls_a
    assert polls_b
    for a_start, a_end in polls_a:
        for b_start, b_end in polls_b:
            assert a_end <= b_start or b_end <= a_start, f"both polled: a {a_start}-{a_end}, b {b_start}-{b_end}"
    archive_objects(bucket)  # nothing written twice


def test_the_daemon_keeps_archiving_while_its_control_objects_are_deleted_under_it(
    tmp_path: Path, bucket: Bucket
) -> None:
    """Someone (or a lifecycle rule) deletes the daemon's lease and member objects again and again:
    each costs at most a lost lease, taken again at once; the daemon keeps polling and archiving,
    and stops cleanly."""
    dataset = Dataset(seed=9, calls_per_day=30000, max_duration=2, business_hours_share=0)
    with reaping() as processes, Simulator(dataset) as sim:
        log = tmp_path / "a.log"
        processes["a"] = _start(tmp_path, "a", sim, bucket, log)
        wait_until(lambda: log_events(log).count("poll.completed") >= 1, timeout=30)
        deleted = 0
        until = time.monotonic() + 8  # more than two lease lifetimes (3 s)
        while time.monotonic() < until:
            listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="archive/_archiver/")
            for item in listed.get("Contents", []):
                if "/leases/" in item["Key"] or "/members/" in item["Key"]:
                    bucket.client.delete_object(Bucket=bucket.name, Key=item["Key"])
                    deleted += 1
            time.sleep(0.3)
        after = log_events(log).count("poll.completed")
        wait_until(lambda: log_events(log).count("poll.completed") >= after + 2, timeout=30)
        assert processes["a"].poll() is None  # still running
        assert terminate(processes["a"]) == 0
        stopped = datetime.now(TZ)
    events = log_events(log)
    assert deleted >= 4
    assert events.count("lease.acquired") >= 2  # taken again after its object went
    assert "command.failed" not in events
    _assert_recorded_calls_archived(bucket, dataset, stopped - timedelta(seconds=20), stopped, settle=4)


def _assert_recorded_calls_archived(
    bucket: Bucket, dataset: Dataset, since: datetime, stopped: datetime, *, settle: float
) -> None:
    """Every recorded call that started after *since* and ended *settle* seconds before *stopped*
    has its record in *bucket*, and nothing was written twice (the lease object is renewed, by design)."""
    objects = archive_objects(bucket)
    ended = [
        c
        for c in dataset.calls_between(since, stopped, stopped)
        if c.has_recording and c.end < stopped - timedelta(seconds=settle)
    ]
    assert ended
    for call in ended:
        assert f"archive/{call.start:%Y/%m/%d}/{call.uuid}.json" in objects


def _polls(log: Path) -> list[tuple[datetime, datetime]]:
    """Each poll's (start, end) from a JSON log: from poll.started to whatever ended it."""
    ends = {"poll.completed", "poll.failed", "lease.expiring_unrenewed", "lease.lost", "lease.handed_back"}
    polls, started = [], None
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        when = datetime.fromisoformat(event["timestamp"])
        if event["event"] == "poll.started":
            started = when
        elif event["event"] in ends and started is not None:
            polls.append((started, when))
            started = None
    if started is not None:
        polls.append((started, datetime.max.replace(tzinfo=started.tzinfo)))  # still polling when it stopped
    return polls


def _start(
    tmp_path: Path,
    name: str,
    sim: Simulator,
    bucket: Bucket,
    log: Path,
    *command: str,
    endpoint: str | None = None,
    level: str = "info",
    metrics_port: int | None = None,
) -> subprocess.Popen[bytes]:
    raw: dict[str, Any] = {
        "source": {"base_url": sim.url, "api_key": sim.api_key, "api_secret": sim.api_secret},
        "storage": {"url": bucket.url, "endpoint_url": endpoint or bucket.endpoint},
        "state": {"path": str(tmp_path / f"{name}.sqlite3")},
        "poll": {"interval": "1s", "settle": "1s", "lookback": "5m"},
        "coordination": {"lease_ttl": "3s"},
    }
    if metrics_port is not None:
        raw["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw))
    command = command or ("run",)
    return start_archiver(command[0], config, *command[1:], log=log, level=level)


def test_hosts_share_a_backfill_by_day_and_a_killed_host_s_day_is_taken_over(tmp_path: Path, bucket: Bucket) -> None:
    """Three hosts run one backfill; one is killed mid-day; the others finish it; all exit 0, nothing twice."""
    dataset = Dataset(seed=4, calls_per_day=40, max_duration=3)
    with reaping() as hosts, Simulator(dataset, faults=Faults(recording_latency=0.05)) as sim:
        logs = {name: tmp_path / f"{name}.log" for name in ("a", "b", "c")}
        for name, log in logs.items():
            hosts[name] = _start(
                tmp_path,
                name,
                sim,
                bucket,
                log,
                "backfill",
                "--since",
                "2026-11-01",
                "--until",
                "2026-11-05",
            )
        wait_until(lambda: "call.archived" in log_events(logs["a"]))
        hosts["a"].send_signal(signal.SIGKILL)
        hosts["a"].wait()
        assert hosts["b"].wait(timeout=120) == 0, logs["b"].read_text()[-3000:]
        assert hosts["c"].wait(timeout=120) == 0, logs["c"].read_text()[-3000:]
        calls = dataset.calls_between(datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 5, tzinfo=TZ), sim.now())
    done_by = {name: log_events(logs[name]).count("shard.done") for name in ("b", "c")}
    assert sum(done_by.values()) >= 4  # every day finished by a survivor (a killed host finishes none)
    assert all(count >= 1 for count in done_by.values()), done_by  # both shared the work
    objects = archive_objects(bucket)
    sidecars = [k for k in objects if is_sidecar(k)]
    assert len(sidecars) == len(calls)
    for call in calls:
        if call.has_recording:
            assert objects[f"archive/{call.start:%Y/%m/%d}/{call.uuid}.wav"] == dataset.recording_bytes(call)
    assert len([v for v in bucket.versions() if "/_archiver/" not in v["Key"]]) == len(objects)
