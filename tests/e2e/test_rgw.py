"""The archiver as operators run it, on Ceph RGW (every request's signature and payload hash
checked): backfill, the daemon under its lease, rearchive, verify --deep, reconcile, find, show,
export and check, with what RGW 16 does differently from AWS S3."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from archiver.core.encryption import Identity, public
from archiver.simulator import Dataset, Simulator
from tests.ceph import CephRgw
from tests.helpers import (
    AWS_ENV,
    SINCE,
    UNTIL,
    Bucket,
    age_identity,
    archive_objects,
    config_dict,
    is_sidecar,
    make_bucket,
    need_os_tools,
    run_cli,
    write_config,
)

SPAN = ("--since", "2026-11-01", "--until", "2026-11-03")


def rgw_config(tmp_path: Path, api: Simulator, bucket: Bucket, name: str = "config.yaml", **sections: Any) -> Path:
    raw = config_dict(api=api, storage=bucket.url, state=tmp_path / "ledger.sqlite3", endpoint=bucket.endpoint)
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return write_config(tmp_path / name, raw)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_every_command_works_on_rgw(sim: Simulator, tmp_path: Path, rgw_bucket: Bucket) -> None:
    """backfill (twice: the second writes nothing), verify --deep, reconcile, find, show and
    export on RGW; the backfill's run is marked finished (a conditional write on RGW's ETag)."""
    config = rgw_config(tmp_path, sim, rgw_bucket)
    checked = ok(run_cli("check", "-c", str(config)))
    assert "ok    create-only: the store refuses a second write of a key" in checked.stdout
    assert "ok    checksums: the store keeps no SHA-256 of its own: verify reads every recording back" in checked.stdout
    assert "WARN  create-only: the store ignores If-None-Match on completing a multipart upload" in checked.stdout
    assert archive_objects(rgw_bucket) == {}  # every probe object removed again
    calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
    first = ok(run_cli("backfill", "-c", str(config), *SPAN))
    recorded = sum(c.has_recording for c in calls)
    assert f"archived {recorded} recordings" in first.stdout
    objects = archive_objects(rgw_bucket)
    assert sum(is_sidecar(k) for k in objects) == len(calls)
    for call in (c for c in calls if c.has_recording):
        assert objects[f"archive/{call.start:%Y/%m/%d}/{call.uuid}.wav"] == sim.dataset.recording_bytes(call)
    states = [k for k in rgw_bucket.objects() if k.endswith("/run.state")]
    assert len(states) == 1
    assert json.loads(rgw_bucket.objects()[states[0]])["finished_at"] is not None
    assert '"store.if_match_form_learned"' in first.stderr

    second = ok(run_cli("backfill", "-c", str(config), *SPAN))
    assert "archived 0 recordings" in second.stdout
    assert archive_objects(rgw_bucket) == objects

    verified = ok(run_cli("verify", "-c", str(config), "--deep"))
    assert f"verified 2 days: {len(calls)} calls" in verified.stdout
    assert "0 problem(s)" in verified.stdout
    ok(run_cli("reconcile", "-c", str(config), *SPAN))

    call = next(c for c in calls if c.has_recording and c.duration > 1)
    found = json.loads(ok(run_cli("find", "-c", str(config), "--number", call.source, *SPAN, "--json")).stdout)
    assert call.uuid in json.dumps(found)
    shown = ok(run_cli("show", "-c", str(config), call.uuid))
    assert hashlib.sha256(sim.dataset.recording_bytes(call)).hexdigest() in shown.stdout
    bundle = tmp_path / "evidence.zip"
    ok(run_cli("export", "-c", str(config), call.uuid, "--out", str(bundle)))
    with zipfile.ZipFile(bundle) as zipped:
        [audio] = [n for n in zipped.namelist() if n.endswith(f"{call.uuid}.wav")]
        assert zipped.read(audio) == sim.dataset.recording_bytes(call)


def test_rearchive_corrects_by_revision_on_rgw(sim: Simulator, tmp_path: Path, rgw_bucket: Bucket) -> None:
    """Recordings refused by a wrong allow-list come in as revisions once it is fixed; no first
    record changes."""
    wrong = rgw_config(tmp_path, sim, rgw_bucket, "wrong.yaml", source={"allowed_recording_hosts": ["x.example"]})
    ok(run_cli("backfill", "-c", str(wrong), *SPAN))
    before = archive_objects(rgw_bucket)
    rejected = [k for k, v in before.items() if is_sidecar(k) and json.loads(v)["recording"]["status"] == "rejected"]
    assert rejected
    fixed = rgw_config(tmp_path, sim, rgw_bucket, "fixed.yaml")
    done = ok(run_cli("rearchive", "-c", str(fixed), *SPAN))
    assert done.stdout.count(" rejected -> archived; ") == len(rejected)
    after = archive_objects(rgw_bucket)
    assert all(after[k] == v for k, v in before.items() if "/_archiver/" not in k and is_sidecar(k))
    for key in rejected:
        assert json.loads(after[key.replace(".json", ".rev2.json")])["recording"]["status"] == "archived"
    ok(run_cli("verify", "-c", str(fixed), "--deep"))


def test_the_daemon_keeps_its_lease_on_rgw_and_archives(tmp_path: Path, rgw_bucket: Bucket) -> None:
    """With a 3 s lease, the daemon renews it several times on RGW (If-Match on the bare ETag)
    and never loses it, while it archives the calls that end."""
    dataset = Dataset(seed=3, calls_per_day=20000, max_duration=2, business_hours_share=0)
    with Simulator(dataset) as sim:
        config = rgw_config(
            tmp_path,
            sim,
            rgw_bucket,
            poll={"interval": "1s", "settle": "2s", "lookback": "5m"},
            coordination={"lease_ttl": "3s"},
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "--log-format", "json", "run", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        try:
            time.sleep(12)
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "lease.acquired" in events
    assert "lease.lost" not in events
    assert "store.if_match_form_learned" in events
    assert events.count("poll.completed") >= 5  # polled through several renewals (one a second)
    assert sum(is_sidecar(k) for k in archive_objects(rgw_bucket)) > 0


def test_check_says_what_a_versioned_rgw_bucket_cannot_do(sim: Simulator, tmp_path: Path, rgw: CephRgw) -> None:
    """On a versioned bucket RGW 16 ignores If-None-Match and refuses If-Match: check exits 2
    naming both; with look_before_write and the control objects in an unversioned bucket it
    passes, and a backfill then archives every call once."""
    versioned = make_bucket(rgw.endpoint, versioned=True)
    refused = run_cli("check", "-c", str(rgw_config(tmp_path, sim, versioned)))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "accepted a second create-only write of the same key: it ignores If-None-Match" in refused.stdout
    assert "refused to replace a control object on its own current ETag (If-Match)" in refused.stdout
    assert "coordination.bucket" in refused.stdout
    control = make_bucket(rgw.endpoint, versioned=False)
    looking = rgw_config(
        tmp_path,
        sim,
        versioned,
        "looking.yaml",
        storage={"create_only": "look_before_write"},
        coordination={"bucket": control.name},
    )
    passed = ok(run_cli("check", "-c", str(looking)))
    assert "WARN  create-only: storage.create_only is look_before_write" in passed.stdout
    ok(run_cli("backfill", "-c", str(looking), *SPAN))
    calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
    assert sum(is_sidecar(k) for k in archive_objects(versioned)) == len(calls)  # each written once


def test_wrong_store_credentials_exit_2_naming_the_setting(sim: Simulator, tmp_path: Path, rgw_bucket: Bucket) -> None:
    """A wrong secret key, and an unknown access key, end a backfill with exit 2 and a message
    naming the cause and where the keys come from; no traceback, no secret."""
    config = rgw_config(tmp_path, sim, rgw_bucket)
    for env, cause in (
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret-key-000"}, "SignatureDoesNotMatch"),
        ({"AWS_ACCESS_KEY_ID": "NOSUCHKEY00000000000"}, "InvalidAccessKeyId"),
    ):
        started = time.monotonic()
        result = run_cli("backfill", "-c", str(config), *SPAN, env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert cause in result.stderr
        assert "storage.credentials_file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in result.stderr
        assert "Traceback" not in result.stderr
        assert "wrong-secret-key-000" not in result.stderr + result.stdout
        assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in result.stderr + result.stdout
        assert time.monotonic() - started < 60  # stopped, not retried
    assert archive_objects(rgw_bucket) == {}


def test_an_encrypted_archive_end_to_end_on_rgw(sim: Simulator, tmp_path: Path, rgw: CephRgw) -> None:
    """storage.encryption on RGW (every request signed and checked), the keys in a bucket of their
    own: check, backfill, verify --deep --decrypt, show, export (the bundle holds the audio), the
    README's two age commands on objects fetched from RGW, erase by destroying a key, rekey to a new
    identity, and verify --decrypt with it."""
    archive, keys = make_bucket(rgw.endpoint, versioned=False), make_bucket(rgw.endpoint, versioned=False)
    identity = age_identity(tmp_path)
    section = {
        "age_recipients": [public(identity)],
        "keys_url": f"s3://{keys.name}/keys",
        "identity_file": str(tmp_path / "age-identity"),
    }
    raw = config_dict(api=sim, storage=archive.url, state=tmp_path / "ledger.sqlite3", endpoint=archive.endpoint)
    raw["storage"]["encryption"] = section
    config = write_config(tmp_path / "config.yaml", raw)
    checked = ok(run_cli("check", "-c", str(config)))
    assert "WARN  storage.encryption.keys_url: versioning is off" in checked.stdout
    assert "a key can be written create-only, read and deleted" in checked.stdout
    ok(run_cli("backfill", "-c", str(config), *SPAN))
    calls = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording]
    objects = archive_objects(archive)
    assert not [k for k in objects if k.endswith(".wav")]
    assert len([k for k in objects if k.endswith(".wav.age")]) == len(calls)
    verified = ok(run_cli("verify", "-c", str(config), "--deep", "--decrypt"))
    assert f"{len(calls)} decrypted" in verified.stdout
    assert "0 problem(s)" in verified.stdout

    call = calls[0]
    ok(run_cli("show", "-c", str(config), call.uuid))
    bundle = tmp_path / "evidence.zip"
    ok(run_cli("export", "-c", str(config), call.uuid, "--out", str(bundle)))
    with zipfile.ZipFile(bundle) as z:
        assert z.read(f"{call.start:%Y/%m/%d}/{call.uuid}.wav") == sim.dataset.recording_bytes(call)

    need_os_tools("decrypting by hand", "age")
    record = json.loads(objects[f"archive/{call.start:%Y/%m/%d}/{call.uuid}.json"])
    (tmp_path / "key.age").write_bytes(keys.objects()[record["recording"]["encryption"]["key_object"]])
    (tmp_path / "recording.age").write_bytes(objects[record["recording"]["key"]])
    for step in (
        ["age", "-d", "-i", str(tmp_path / "age-identity"), "-o", "call.key", "key.age"],
        ["age", "-d", "-i", "call.key", "-o", "call.wav", "recording.age"],
    ):
        subprocess.run(step, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "call.wav").read_bytes() == sim.dataset.recording_bytes(call)

    erased = ok(run_cli("erase", "-c", str(config), call.uuid, "--reason", "DSR-RGW"))
    assert "crypto-shredded" in erased.stdout
    assert not [k for k in keys.objects() if f"/{call.uuid}." in k]
    assert archive.objects()[record["recording"]["key"]] == objects[record["recording"]["key"]]

    newcomer = Identity.generate()
    (tmp_path / "both").write_text(f"{identity}\n{newcomer}\n")
    raw["storage"]["encryption"] |= {"age_recipients": [public(newcomer)], "identity_file": str(tmp_path / "both")}
    write_config(config, raw)
    rekeyed = ok(run_cli("rekey", "-c", str(config)))
    assert f"{len(calls) - 1} key(s) of recordings: {len(calls) - 1} wrapped again" in rekeyed.stdout
    (tmp_path / "new-identity").write_text(f"{newcomer}\n")
    raw["storage"]["encryption"]["identity_file"] = str(tmp_path / "new-identity")
    write_config(config, raw)
    again = ok(run_cli("verify", "-c", str(config), "--decrypt"))
    assert f"{len(calls) - 1} decrypted" in again.stdout
    assert "1 call(s) erased on request (1 by destroying their keys)" in again.stdout
