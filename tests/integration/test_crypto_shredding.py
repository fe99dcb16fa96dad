"""Erasure of encrypted calls by destroying their keys (crypto-shredding), on moto over HTTP: under
Object Lock COMPLIANCE and a legal hold on the recording; what verify then finds; a keys bucket
that refuses deletes or keeps its objects under retention; an erase cut short."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.audit.encrypted import KeyChecker
from archiver.audit.plaintext import Decrypter
from archiver.audit.verify import Verifier
from archiver.core import keyobjects, sidecar
from archiver.core.encryption import Identity
from archiver.core.outcome import Erased
from archiver.errors import KeyObjectError, StoreAccessError, StoreUnavailable
from archiver.lifecycle.erase import Eraser, EraseRefused
from archiver.simulator import Simulator
from archiver.store.keys import KeyStore
from tests.helpers import (
    SINCE,
    TZ,
    UNTIL,
    Bucket,
    FakeClock,
    age_identity,
    backfill,
    check_sidecar,
    config_for,
    encryption_section,
    expirer_of,
    make_bucket,
    need_os_tools,
    retain_by_default,
    s3_store,
)
from tests.s3faults import Answer, FaultProxy, Forward, S3Request, delete_errors

pytestmark = pytest.mark.anyio
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)
LATER = FakeClock(STORED + timedelta(days=3))


async def encrypted_archive(
    sim: Simulator, tmp_path: Path, archive: Bucket, keys: Bucket, **storage: Any
) -> tuple[Identity, str, dict[str, Any]]:
    """An encrypted backfill into *archive*, its keys in *keys* (more *storage* settings given): the
    identity, and one recorded call's id and record."""
    identity = age_identity(tmp_path)
    storage = {**encryption_section(f"s3://{keys.name}/keys", identity), **storage}
    config = config_for(sim, archive.url, tmp_path, endpoint=archive.endpoint, storage=storage)
    await backfill(config, clock=FakeClock(STORED))
    call = next(
        c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording and not c.recording_missing
    )
    record = json.loads(archive.objects()[f"archive/{call.start:%Y/%m/%d}/{call.uuid}.json"])
    return identity, call.uuid, record


async def locked_archive(
    sim: Simulator, tmp_path: Path, moto_server: Any, *, legal_hold: bool = False
) -> tuple[Bucket, Bucket, Identity, str, dict[str, Any]]:
    """An encrypted archive in a bucket under Object Lock (COMPLIANCE for a day), its keys in a
    plain versioned bucket: the buckets, the identity, and one recorded call's id and record."""
    archive = make_bucket(moto_server.endpoint, object_lock=True)
    keys = make_bucket(moto_server.endpoint)
    lock = {"mode": "COMPLIANCE", "retain_days": 1}
    identity, call_id, record = await encrypted_archive(
        sim, tmp_path, archive, keys, object_lock=lock, legal_hold=legal_hold
    )
    return archive, keys, identity, call_id, record


def eraser_of(archive: Bucket, keys: KeyStore) -> Eraser:
    return Eraser(s3_store(archive.endpoint, archive.name), "archive", tz=TZ, clock=LATER, keys=keys)


def keys_of(bucket: Bucket, endpoint: str | None = None) -> KeyStore:
    return KeyStore(s3_store(endpoint or bucket.endpoint, bucket.name), "keys")


def verifier(archive: Bucket, keys: KeyStore, identity: Identity | None = None) -> Verifier:
    store = s3_store(archive.endpoint, archive.name)
    decrypter = Decrypter(keys, [identity]) if identity is not None else None
    return Verifier(store, "archive", clock=LATER, keys=KeyChecker(store, keys, decrypter=decrypter))


@pytest.mark.parametrize("legal_hold", [False, True], ids=["compliance", "compliance and legal hold"])
async def test_an_encrypted_call_under_compliance_is_erased_by_destroying_its_key(
    legal_hold: bool, sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """The recording cannot be deleted (COMPLIANCE retention, a legal hold), and need not be: the
    revision names the recording, its ciphertext digest and every version of its keys destroyed;
    the keys are gone, the recording is there, byte for byte; verify counts the crypto-shredded call,
    finds its ciphertext intact and its key gone; the archive's identity opens nothing of it."""
    archive, keys, identity, call_id, record = await locked_archive(sim, tmp_path, moto_server, legal_hold=legal_hold)
    recording = record["recording"]
    before = archive.objects()[recording["key"]]
    stem = keyobjects.stem("keys", datetime.fromisoformat(record["call"]["start_local"]).date(), call_id)
    key_versions = [v for v in keys.versions() if v["Key"].startswith(stem + ".")]
    assert len(key_versions) == 2  # the key object and its label

    report = await eraser_of(archive, keys_of(keys)).erase(
        call_id, "DSR-2026-17", bypass_governance=False, dry_run=False
    )

    assert report.key_versions_removed == 2
    assert report.versions_removed == 0
    revision = json.loads(archive.objects()[report.revision_key])
    check_sidecar(revision)
    erased = revision["recording"]
    assert (erased["status"], erased["reason"], erased["removed"]) == ("erased", "DSR-2026-17", [])
    [shredded] = erased["crypto_shredded"]
    assert (shredded["key"], shredded["size"], shredded["sha256"]) == (
        recording["key"],
        recording["size"],
        recording["sha256"],
    )
    assert sorted((o["key"], o["version_id"]) for o in shredded["key_objects"]) == sorted(
        (v["Key"], v["VersionId"]) for v in key_versions
    )
    assert archive.objects()[recording["key"]] == before  # untouched, under its lock
    assert not [v for v in keys.versions() if v["Key"].startswith(stem + ".")]
    listing = keys.client.list_object_versions(Bucket=keys.name, Prefix=stem)
    assert not listing.get("DeleteMarkers")

    audit = await verifier(archive, keys_of(keys), identity).verify(None, deep=True)
    assert audit.problems == []
    assert (audit.erased, audit.crypto_shredded) == (1, 1)
    assert audit.decrypted == audit.encrypted - 1  # every other recording decrypts; the shredded one is not tried
    with pytest.raises(KeyObjectError, match="destroyed"):
        await Decrypter(keys_of(keys), [identity]).key_for(recording)
    need_os_tools("the archive's identity tried on the recording with age", "age")
    (tmp_path / "shredded.age").write_bytes(before)
    opened = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "age-identity"), str(tmp_path / "shredded.age")],
        capture_output=True,
        check=False,
    )
    assert opened.returncode != 0
    assert b"no identity matched" in opened.stderr.lower()


async def test_a_tampered_ciphertext_of_a_shredded_call_and_a_key_left_behind_are_problems(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """verify holds a crypto-shredded recording to its digest (it must stay intact) and its key to
    being gone (an erase cut short: `erase` again finishes it)."""
    archive = make_bucket(moto_server.endpoint)  # no lock: the test rewrites the recording
    keys = make_bucket(moto_server.endpoint)
    _, call_id, record = await encrypted_archive(sim, tmp_path, archive, keys)
    key_object = record["recording"]["encryption"]["key_object"]
    saved = keys.objects()[key_object]
    await eraser_of(archive, keys_of(keys)).erase(call_id, "DSR-1", bypass_governance=False, dry_run=False)
    keys.client.put_object(Bucket=keys.name, Key=key_object, Body=saved)  # as if the erase stopped before it
    archive.client.put_object(Bucket=archive.name, Key=record["recording"]["key"], Body=b"age-encryption.org/v1\nother")
    audit = await verifier(archive, keys_of(keys)).verify(None, deep=True)
    whats = {p.what.split(":")[0] for p in audit.problems if p.call_id == call_id}
    assert any("crypto-shredded, but its key is still in" in w for w in whats), audit.problems
    assert any("the recording is" in w or "SHA-256 differs" in w for w in whats), audit.problems

    again = await eraser_of(archive, keys_of(keys)).erase(call_id, "DSR-1", bypass_governance=False, dry_run=False)
    assert again.already_erased
    assert again.key_versions_removed >= 1
    assert key_object not in keys.objects()


async def test_a_keys_bucket_that_refuses_deletes_stops_the_erase_before_anything_is_written(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """Credentials without s3:DeleteObject on the keys bucket: the erase says so, naming
    storage.encryption.keys_url, before writing its revision; nothing in the archive changes."""
    archive, keys, _, call_id, record = await locked_archive(sim, tmp_path, moto_server)
    before = archive.objects()
    with (
        FaultProxy(moto_server.endpoint, delete_errors(lambda key: "AccessDenied")) as proxy,
        pytest.raises(StoreAccessError, match=r"storage\.encryption\.keys_url.*nothing was written"),
    ):
        await eraser_of(archive, keys_of(keys, proxy.endpoint)).erase(
            call_id, "DSR-3", bypass_governance=False, dry_run=False
        )
    assert archive.objects() == before
    assert record["recording"]["encryption"]["key_object"] in keys.objects()


async def test_a_keys_store_failing_after_the_erasure_is_recorded_says_to_run_the_erase_again(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """The keys store answers the probe, then fails every delete of a key (InternalError, each
    try): the error says the erasure is recorded and to run the erase again, and the next run,
    with the store well, destroys the key and verify then counts the call erased."""
    archive, keys, _, call_id, record = await locked_archive(sim, tmp_path, moto_server)
    key_object = record["recording"]["encryption"]["key_object"]
    failing = delete_errors(lambda key: "InternalError" if key.endswith(".age") else None)
    with (
        FaultProxy(moto_server.endpoint, failing) as proxy,
        pytest.raises(StoreUnavailable, match=r"the erasure is recorded in .*run the erase again"),
    ):
        await eraser_of(archive, keys_of(keys, proxy.endpoint)).erase(
            call_id, "DSR-4", bypass_governance=False, dry_run=False
        )
    assert key_object in keys.objects()  # not destroyed, and not said to be
    await eraser_of(archive, keys_of(keys)).erase(call_id, "DSR-4", bypass_governance=False, dry_run=False)
    assert key_object not in keys.objects()
    report = await verifier(archive, keys_of(keys)).verify(None)
    assert report.problems == []
    assert (report.erased, report.crypto_shredded) == (1, 1)


async def test_an_erasure_record_that_leaves_out_an_encrypted_recording_is_not_taken_as_done(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A record says the call erased but lists none of its encrypted recordings (written by
    someone else, or a rearchive's recording landed since): running the erase again does not
    report it done with the keys left; it refuses, naming the recording, and the key stays for a
    person to judge."""
    archive, keys = make_bucket(moto_server.endpoint), make_bucket(moto_server.endpoint)
    _, call_id, record = await encrypted_archive(sim, tmp_path, archive, keys)
    first = record["recording"]["key"].replace(".wav.age", ".json")  # the call's first record, beside its recording
    body = sidecar.revised(
        record,
        Erased(reason="forged", erased_at=STORED, removed=(), crypto_shredded=()),
        revision=sidecar.Revision(2, first, "erase: forged"),
        archived_at=STORED,
    )
    archive.client.put_object(Bucket=archive.name, Key=first.replace(".json", ".rev2.json"), Body=body)
    key_object = record["recording"]["encryption"]["key_object"]
    with pytest.raises(EraseRefused, match=r"does not list .*\.wav\.age.*nothing was written"):
        await eraser_of(archive, keys_of(keys)).erase(call_id, "DSR-5", bypass_governance=False, dry_run=False)
    assert key_object in keys.objects()


async def test_a_dry_run_erase_writes_nothing_to_the_keys_store(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """--dry-run says what an erase of an encrypted call would destroy, and writes nothing: not
    even the probe that a real erase writes and removes in the keys store."""
    archive, keys = make_bucket(moto_server.endpoint), make_bucket(moto_server.endpoint)
    _, call_id, record = await encrypted_archive(sim, tmp_path, archive, keys)
    before = (keys.versions(), archive.versions())
    writes: list[str] = []

    def watch(request: S3Request, forward: Forward) -> Answer | None:
        if request.method not in ("GET", "HEAD"):
            writes.append(f"{request.method} {request.path}")
        return None

    with FaultProxy(moto_server.endpoint, watch) as proxy:
        report = await eraser_of(archive, keys_of(keys, proxy.endpoint)).erase(
            call_id, "DSR-6", bypass_governance=False, dry_run=True
        )
    assert [s.key for s in report.shredded] == [record["recording"]["key"]]
    assert writes == []
    assert (keys.versions(), archive.versions()) == before


async def test_a_keys_bucket_with_default_retention_refuses_the_erase_naming_the_setting(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """Keys kept under Object Lock could never be destroyed: refused before anything is written."""
    archive = make_bucket(moto_server.endpoint)
    keys = make_bucket(moto_server.endpoint, object_lock=True)
    retain_by_default(keys)
    _, call_id, _ = await encrypted_archive(sim, tmp_path, archive, keys)
    before = archive.objects()
    with pytest.raises(StoreAccessError, match=r"storage\.encryption\.keys_url must have no retention"):
        await eraser_of(archive, keys_of(keys)).erase(call_id, "DSR-4", bypass_governance=False, dry_run=False)
    assert archive.objects() == before


async def test_an_encrypted_call_cannot_be_erased_without_the_keys_store_configured(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """Without storage.encryption the keys cannot be reached: refused, nothing written."""
    archive, _, _, call_id, _ = await locked_archive(sim, tmp_path, moto_server)
    before = archive.objects()
    eraser = Eraser(s3_store(archive.endpoint, archive.name), "archive", tz=TZ, clock=LATER)
    with pytest.raises(EraseRefused, match="sets no storage.encryption"):
        await eraser.erase(call_id, "DSR-5", bypass_governance=False, dry_run=False)
    assert archive.objects() == before


async def test_expire_destroys_the_keys_of_the_day_it_removes_but_of_what_a_lock_keeps(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A day past retention loses its recordings and their keys, every version; a recording under
    a legal hold stays, and so does its key (it stays readable while it stays); the other day's
    keys are untouched."""
    archive = make_bucket(moto_server.endpoint, object_lock=True)
    keys = make_bucket(moto_server.endpoint)
    identity, _, _ = await encrypted_archive(sim, tmp_path, archive, keys)
    first_day = "2026/11/01"  # past retention at the clock below; 2026/11/02 is not
    record = next(
        doc
        for key, raw in sorted(archive.objects().items())
        if key.startswith(f"archive/{first_day}/")
        and key.endswith(".json")
        and "manifest" not in key
        and (doc := json.loads(raw)).get("recording", {}).get("status") == "archived"
    )
    call_id = record["call_id"]
    archive.client.put_object_legal_hold(
        Bucket=archive.name, Key=record["recording"]["key"], LegalHold={"Status": "ON"}
    )
    others = {k for k in keys.objects() if f"keys/{first_day}/" not in k}
    store = s3_store(archive.endpoint, archive.name)
    key_store = keys_of(keys)
    expirer = expirer_of(store, key_store)
    report = await expirer.run()
    [day] = report.days
    assert day.keys_removed > 0
    left = set(keys.objects())
    stem = keyobjects.stem("keys", day.day, call_id)
    assert {k for k in left if f"keys/{first_day}/" in k} == {
        k for k in left if k.startswith(stem + ".")
    }  # the held one's
    assert others <= left
    assert not [v for v in keys.versions() if f"keys/{first_day}/" in v["Key"] and not v["Key"].startswith(stem + ".")]
    await Decrypter(key_store, [identity]).check(store, record["recording"])  # still readable while it stays

    archive.client.put_object_legal_hold(
        Bucket=archive.name, Key=record["recording"]["key"], LegalHold={"Status": "OFF"}
    )
    await expirer.run()  # the hold lifted: the recording goes, and its key with it
    assert not [k for k in keys.objects() if f"keys/{first_day}/" in k]
    assert not archive.objects(f"archive/{first_day}/")
    left_behind = f"keys/{first_day}/{'0' * 8}-0000-4000-8000-{'0' * 12}.{'1' * 16}.{'2' * 12}.age"
    keys.client.put_object(Bucket=keys.name, Key=left_behind, Body=b"a key an expire cut short left")
    await expirer.run()
    assert left_behind not in keys.objects()  # its day is gone from the archive: found by the keys' own days


async def test_expire_keeps_the_key_of_a_recording_that_landed_after_its_listing(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A recording of an expiring day lands between expire's listing and its removal (a rearchive
    racing it): it stays in the archive, unrecorded and unremoved, so its key stays too, and it
    stays readable; the keys of what expire removed are destroyed."""
    archive, keys = make_bucket(moto_server.endpoint), make_bucket(moto_server.endpoint)
    await encrypted_archive(sim, tmp_path, archive, keys)
    first_day = "2026/11/01"
    own = sorted(k for k in keys.objects() if k.startswith(f"keys/{first_day}/") and k.endswith(".age"))
    call_id = own[0].rsplit("/", 1)[1].split(".", 1)[0]
    late_key = own[0].replace(f"/{call_id}.", f"/{call_id}.rev2.")
    keys.client.put_object(Bucket=keys.name, Key=late_key, Body=keys.objects()[own[0]])
    late = f"archive/{first_day}/{call_id}.rev2.wav.age"

    def lands_during_removal(request: S3Request, forward: Forward) -> Answer | None:
        if request.operation != "DeleteObjects" or request.bucket != archive.name:
            return None
        answer = forward()
        if late not in {v["Key"] for v in archive.versions()}:
            archive.client.put_object(Bucket=archive.name, Key=late, Body=b"age-encryption.org/v1 ...")
        return answer

    with FaultProxy(moto_server.endpoint, lands_during_removal) as proxy:
        report = await expirer_of(s3_store(proxy.endpoint, archive.name), keys_of(keys)).run()
    assert [d.day.isoformat() for d in report.days] == ["2026-11-01"]
    assert late in archive.objects()
    left = {k for k in keys.objects() if k.startswith(f"keys/{first_day}/")}
    assert left == {late_key}  # the late recording's key, and none of what expire removed
