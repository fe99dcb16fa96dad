"""Faults and hostile input: storage outages, broken rows, evil links, full buffers, leaked secrets."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from archiver.simulator import Dataset, Simulator
from tests.helpers import (
    Bucket,
    run_cli,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def test_no_output_of_any_command_carries_a_secret(tmp_path: Path, bucket: Bucket) -> None:
    """The API secret, the AWS secret and the ping URL are in no log line, sidecar, report, plan or metric."""
    secret, ping = "7c6b5a49", "http://127.0.0.1:9/ping/5f3c9e1a-secret-token"
    dataset = Dataset(seed=3, calls_per_day=20, max_duration=2, recording_missing_rate=0.2, foreign_link_rate=0.2)
    with Simulator(dataset, api_secret=secret) as sim:
        raw = {
            "source": {"base_url": sim.url, "api_key": sim.api_key, "api_secret": secret},
            "storage": {"url": bucket.url, "endpoint_url": bucket.endpoint},
            "state": {"path": str(tmp_path / "ledger.sqlite3")},
            "poll": {"ping_url": ping},
        }
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(raw))
        outputs = [
            run_cli(
                "--log-level", "debug", "backfill", "-c", str(path), "--since", "2026-11-01", "--until", "2026-11-03"
            ),
            run_cli("backfill", "-c", str(path), "--since", "2026-11-01", "--until", "2026-11-03", "--dry-run"),
            run_cli("check", "-c", str(path)),
            run_cli("status", "-c", str(path), "--json"),
        ]
        raw["source"]["api_secret"] = "0badc0de"
        path.write_text(yaml.safe_dump(raw))
        outputs.append(run_cli("backfill", "-c", str(path), "--since", "2026-11-01"))
    text = "".join(o.stdout + o.stderr for o in outputs) + "".join(
        v.decode() for k, v in bucket.objects().items() if k.endswith(".json")
    )
    assert outputs[0].returncode == 0
    assert outputs[-1].returncode == 2
    for hidden in (secret, "0badc0de", os.environ["AWS_SECRET_ACCESS_KEY"], ping, "5f3c9e1a-secret-token"):
        assert hidden not in text
    assert "Traceback" not in text
