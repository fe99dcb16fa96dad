"""Three backfills over the same days at once (sharded with overlapping edges, and whole), each with its own ledger and no coordination:
what the bucket ends with is one archive, every record of every day in exactly one sealed manifest."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from archiver.core import dayfiles
from archiver.simulator import Dataset, Faults, Simulator
from tests.helpers import Bucket, archive_objects, assert_sealed, config_dict, is_sidecar, run_cli, write_config

SINCE, UNTIL = "2026-11-01", "2026-11-04"
# Shards of one range whose edges overlap, and one over all of it: each day is closed by two or
# three writers while another may still be storing its calls.
RANGES = [("2026-11-01", "2026-11-02 12:00"), ("2026-11-01 12:00", "2026-11-03 12:00"), (SINCE, UNTIL)]


def test_three_backfills_of_the_same_days_close_each_day_into_one_set_of_manifests(
    tmp_path: Path, bucket: Bucket
) -> None:
    dataset = Dataset(seed=11, calls_per_day=30, max_duration=3)
    faults = Faults(api_latency=0.05, recording_latency=0.05)  # long enough for the three to overlap
    with Simulator(dataset, faults=faults) as sim:
        configs = []
        for n in range(3):
            folder = tmp_path / f"writer{n}"
            folder.mkdir()
            raw = config_dict(
                api=sim,
                storage=bucket.url,
                endpoint=bucket.endpoint,
                state=folder / "ledger.sqlite3",
                download={"concurrency": 2},
                coordination={"enabled": False},
            )
            configs.append(write_config(folder, raw))
        writers = [
            subprocess.Popen(
                [sys.executable, "-m", "archiver", "backfill", "-c", str(c), "--since", since, "--until", until],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c, (since, until) in zip(configs, RANGES, strict=True)
        ]
        outputs = [w.communicate(timeout=240) for w in writers]
        verify = run_cli("verify", "-c", str(configs[0]), "--since", SINCE, "--until", UNTIL, "--deep")
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, out + err[-3000:]
    objects = archive_objects(bucket)  # and nothing written twice
    records = [k for k in objects if is_sidecar(k)]
    assert records
    counts: Counter[str] = Counter()
    for key, data in objects.items():
        name = key.rsplit("/", 1)[-1]
        if name.startswith("manifest-sha256"):
            day_folder = key.rsplit("/", 1)[0] + "/"
            counts.update(day_folder + n for n in dataset_names(data))
    assert {k: counts[k] for k in records} == dict.fromkeys(records, 1)  # each record in exactly one manifest
    assert_sealed(objects, "archive")
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]
    assert "not yet in a manifest" not in verify.stdout


def dataset_names(manifest: bytes) -> list[str]:
    return list(dayfiles.parse_manifest(manifest.decode()))
