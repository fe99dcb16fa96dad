"""``archiver backfill --processes N``: N workers share one backfill by day, one summary."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

from archiver.simulator import Dataset, Faults, Simulator
from tests.helpers import Bucket, config_dict, is_sidecar, run_cli, write_config

SINCE, UNTIL = "2026-11-01", "2026-11-07"


def test_three_processes_share_a_backfill_and_report_it_once(tmp_path: Path, bucket: Bucket) -> None:
    dataset = Dataset(seed=5, calls_per_day=24, max_duration=4)
    faults = Faults(api_latency=0.2, recording_latency=0.1)  # days long enough for every worker to start
    with Simulator(dataset, faults=faults) as sim:
        config = write_config(
            tmp_path,
            config_dict(
                api=sim,
                storage=bucket.url,
                endpoint=bucket.endpoint,
                state=tmp_path / "ledger.sqlite3",
                download={"concurrency": 2},
            ),
        )
        result = run_cli(
            "backfill", "-c", str(config), "--since", SINCE, "--until", UNTIL, "--processes", "3", timeout=240
        )
        calls = [c for day in range(1, 7) for c in dataset.calls_on(date(2026, 11, day))]
    assert result.returncode == 0, result.stderr[-3000:]
    served = [c for c in calls if c.serves_recording]
    assert f"archived {len(served)} recordings" in result.stdout
    assert f"{len(calls) - len(served)} calls without a recording" in result.stdout
    assert "0 already archived" in result.stdout
    workers = int(re.search(r"calls stored by (\d) of them", result.stdout).group(1))  # type: ignore[union-attr]
    assert workers >= 2
    versions = [v["Key"] for v in bucket.versions() if "/_archiver/" not in v["Key"]]  # not the claims
    assert len(versions) == len(set(versions))  # nothing written twice
    assert sum(is_sidecar(k) for k in versions) == len(calls)
    assert {p.name for p in tmp_path.glob("ledger*.sqlite3")} == {
        "ledger.sqlite3",
        "ledger.p1.sqlite3",
        "ledger.p2.sqlite3",
    }
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr[-2000:]
    assert all(line.get("worker") in (0, 1, 2) for line in lines)  # off a terminal: their JSON lines, marked


def test_processes_need_a_shared_archive(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        config_dict(api="http://127.0.0.1:9", storage=f"file://{tmp_path / 'archive'}", state=tmp_path / "l.sqlite3"),
    )
    local = run_cli("backfill", "-c", str(config), "--since", SINCE, "--processes", "2")
    assert local.returncode == 2
    assert "--processes" in local.stderr
    assert "s3://" in local.stderr
    zero = run_cli("backfill", "-c", str(config), "--since", SINCE, "--processes", "0")
    assert zero.returncode == 2
    assert "at least 1" in zero.stderr
