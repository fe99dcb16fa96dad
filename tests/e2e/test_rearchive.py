"""Correcting by revision: a wrong outcome is fixed by a new record beside the old one, never over it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archiver.simulator import Dataset, Dialect, Simulator
from tests.helpers import (
    SINCE,
    UNTIL,
    Bucket,
    archive_objects,
    check_sidecar,
    config_dict,
    is_sidecar,
    run_cli,
    write_config,
)

SPAN = ("--since", "2026-11-01", "--until", "2026-11-03")


def sidecars(objects: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in objects.items() if is_sidecar(k)}


def test_a_wrong_allow_list_is_corrected_by_revisions_after_the_config_is_fixed(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """Recordings refused by a wrong allow-list are archived by rearchive as revisions; the first
    records stay as they were; verify passes; no key holds two versions."""
    raw = config_dict(api=sim, storage=bucket.url, state=tmp_path / "ledger.sqlite3", endpoint=bucket.endpoint)
    raw["source"]["allowed_recording_hosts"] = ["recordings.example.net"]
    wrong = write_config(tmp_path / "wrong.yaml", raw)
    first = run_cli("backfill", "-c", str(wrong), *SPAN)
    assert first.returncode == 0, first.stdout + first.stderr
    before = archive_objects(bucket)
    rejected = {k: d for k, d in sidecars(before).items() if d["recording"]["status"] == "rejected"}
    assert rejected
    assert not any(k.endswith(".wav") for k in before)

    del raw["source"]["allowed_recording_hosts"]  # the fix: only the API's own host, the default
    fixed = write_config(tmp_path / "fixed.yaml", raw)
    dry = run_cli("rearchive", "-c", str(fixed), *SPAN, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.count("would read again: ") == len(rejected)
    assert archive_objects(bucket) == before  # a dry run writes nothing
    done = run_cli("rearchive", "-c", str(fixed), *SPAN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" rejected -> archived; ") == len(rejected)
    after = archive_objects(bucket)  # fails if any key was written twice
    for key, data in before.items():
        if (
            "/_archiver/" not in key
            and key.rsplit("/", 1)[-1].count(".") == 1
            and not key.endswith((".txt", ".csv", ".html"))
        ):
            assert after[key] == data  # every first record is as it was
    for key in rejected:
        revision_key = key.replace(".json", ".rev2.json")
        revision = json.loads(after[revision_key])
        check_sidecar(revision)
        assert revision["revision"] == 2
        assert revision["supersedes"] == key
        assert "rejected -> archived" in revision["reason"]
        audio = revision["recording"]["key"]
        assert audio == key.replace(".json", ".wav")  # the call had no audio: its own name
        assert len(after[audio]) == revision["recording"]["size"]
    addenda = [k for k in after if "manifest-sha256.2.txt" in k]
    assert addenda
    named = "".join(after[k].decode() for k in addenda)
    assert all(k.rsplit("/", 1)[-1].replace(".json", ".rev2.json") in named for k in rejected)

    again = run_cli("rearchive", "-c", str(fixed), *SPAN)  # nothing left to correct
    assert "0 call(s) read again" in again.stdout
    assert archive_objects(bucket) == after
    verify = run_cli("verify", "-c", str(fixed), "--deep")
    assert verify.returncode == 0, verify.stdout
    assert "0 problem(s)" in verify.stdout
    status = json.loads(run_cli("status", "-c", str(fixed), "--json").stdout)
    assert status["calls"]["rejected"] == 0


def test_a_call_archived_without_its_link_is_superseded_by_its_recorded_self(bucket: Bucket, tmp_path: Path) -> None:
    """A link field the archiver could not read left calls as 'none'; once it reads them, rearchive
    --status none archives each under its own id and gives the nr- call a 'superseded' revision."""
    with Simulator(
        Dataset(seed=7, calls_per_day=30, max_duration=6), seed=7, dialect=Dialect(link_field="recording_link")
    ) as sim:
        raw = config_dict(api=sim, storage=bucket.url, state=tmp_path / "ledger.sqlite3", endpoint=bucket.endpoint)
        config = write_config(tmp_path, raw)
        first = run_cli("backfill", "-c", str(config), *SPAN)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "suspicious:" in first.stdout
        sim.dialect = Dialect()  # the archiver reads the link now (here: the server went back to the documented name)
        done = run_cli("rearchive", "-c", str(config), *SPAN, "--status", "none")
        reconcile = run_cli("reconcile", "-c", str(config), *SPAN)
    assert done.returncode == 0, done.stdout + done.stderr
    superseded = done.stdout.count(" none -> superseded; ")
    recorded = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording]
    assert superseded == len(recorded) > 0  # every recorded call, whatever its link then served
    docs = sidecars(archive_objects(bucket))
    revisions = {k: d for k, d in docs.items() if ".rev2." in k}
    assert len(revisions) == superseded
    for key, revision in revisions.items():
        check_sidecar(revision)
        assert revision["recording"]["status"] == "superseded"
        target = docs[revision["recording"]["superseded_by"]]
        assert target["supersedes_call"] == key.replace(".rev2.json", ".json")
        assert target["call_id"] != revision["call_id"]
    assert reconcile.returncode == 0, reconcile.stdout
    verify = run_cli("verify", "-c", str(config))
    assert verify.returncode == 0, verify.stdout
