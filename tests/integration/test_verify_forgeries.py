"""Forgeries verify finds, and the unlucky states it does not call whole: expiry records that
name another day's folder or a time to come, records added to sealed days, days left past their
retention, checksums the writer supplied, and a nightly run that must not cry wolf.

Each test is one attack by someone who can write to the bucket (or one thing a wrong clock, a
refusing store or a killed process leaves) and what the archive says of it. Folder stores where
the store does not matter; moto, Ceph RGW and the fault proxy (for what AWS answers and moto does
not) where it does. The README's "What verify stands against" says which are stopped and which
are shown.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest
from structlog.testing import capture_logs

from archiver.archive.seal import Sealer
from archiver.audit.recordings import RecordChecker
from archiver.audit.verify import Verifier, VerifyReport
from archiver.core import keys, seal
from archiver.lifecycle.expire import Expirer
from archiver.simulator import Simulator
from archiver.store import Store
from archiver.store.listing import list_day
from archiver.store.local import LocalStore
from tests.helpers import (
    Bucket,
    FakeClock,
    MotoServer,
    backfill,
    config_dict,
    config_for,
    make_bucket,
    run_cli,
    s3_store,
    write_config,
)
from tests.s3faults import Answer, FaultProxy, Forward, S3Request, delete_errors

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LA = ZoneInfo("America/Los_Angeles")
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)  # the archive's two days, 2026-11-01 and -02, written and closed
FIRST, SECOND = date(2026, 11, 1), date(2026, 11, 2)
EXPIRY_TIME = datetime(2026, 12, 2, 12, tzinfo=TZ)  # past 30 days from the first day's end, not the second's
THIRTY_DAYS = (timedelta(days=30), "30d", TZ)
PROBE = "archive/_archiver/check/probe.txt"  # where verify asks the store whether it checks checksums


def problems(report: VerifyReport) -> list[str]:
    return [p.what for p in report.problems]


def expirer(store: Store, clock: FakeClock, *, tz: ZoneInfo | None = TZ, prefix: str = "") -> Expirer:
    sealer = Sealer(store, prefix, clock)
    return Expirer(store, prefix, tz=tz, keep=timedelta(days=30), policy="30d", clock=clock, sealer=sealer)


async def folder_archive(sim: Simulator, tmp_path: Path) -> Path:
    """A folder archive of two days, closed and sealed."""
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path), clock=FakeClock(STORED))
    return root


async def forge_expiry(store: Store, record: seal.Expiry, at: datetime, prefix: str = "") -> None:
    """What a writer to the bucket does: appends a seal recording *record*, as expire appends one
    (the policy it names stated, the archive's zone stated), then removes the folder *record* names."""
    sealer = Sealer(store, prefix, FakeClock(at), timezone=TZ.key)
    await sealer.record_expiry([record], record.policy)
    await store.remove_versions(await store.versions_in(record.folder))


async def manifest_links(store: Store, day: date, prefix: str = "") -> tuple[seal.Link, ...]:
    listing = await list_day(store, prefix, day)
    return tuple([seal.Link(k, hashlib.sha256(await store.read(k)).hexdigest()) for k in listing.manifests.values()])


# -- the nightly verify after a lawful expire ----------------------------------------------------


async def test_the_nightly_verify_does_not_call_a_lawfully_expired_day_gone(sim: Simulator, tmp_path: Path) -> None:
    """The first day expires lawfully under 30 days; the nightly verify (a few days, and every
    sealed day's folder) checks the second day. The expired day's folder is gone because its expiry
    is recorded: that is not "a sealed day is gone", on any night."""
    root = await folder_archive(sim, tmp_path)
    clock = FakeClock(EXPIRY_TIME)
    report = await expirer(LocalStore(root), clock).run()
    assert [d.day for d in report.days] == [FIRST]
    assert not (root / "2026" / "11" / "01").exists()
    full = await Verifier(LocalStore(root), "", clock=clock, retention=THIRTY_DAYS).verify(None)
    assert full.problems == []  # the whole archive is whole
    nightly = await Verifier(LocalStore(root), "", clock=clock, retention=THIRTY_DAYS).verify(
        [SECOND], deep=True, every_sealed_day=True
    )
    assert problems(nightly) == []


# -- an expiry record that names one day and removes another ------------------------------------


async def test_an_expiry_record_whose_day_is_not_its_folders_day_is_a_problem(sim: Simulator, tmp_path: Path) -> None:
    """A forged record says day 2000-01-01 expired (lawful by any policy) but names the folder of
    2026-11-01, four days old, which is then removed. Lawfulness is weighed on the day a record
    names and what it accounts for is its folder: the two must be one day's."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    folder = keys.day_prefix("", FIRST)
    record = seal.Expiry("2000-01-01", folder, await manifest_links(store, FIRST), "30d", seal.utc_text(STORED))
    await forge_expiry(store, record, STORED)
    assert not (root / "2026" / "11" / "01").exists()
    report = await Verifier(store, "", clock=FakeClock(STORED), retention=THIRTY_DAYS).verify(None)
    assert "the expiry record of 2000-01-01 (seal 3) names the folder 2026/11/01/, not its day's (2000/01/01/)" in (
        problems(report)
    )


async def test_a_day_removed_under_a_record_naming_another_day_is_found_by_the_nightly(
    sim: Simulator, tmp_path: Path
) -> None:
    """The same forgery, as the nightly verify sees it: the day is out of the nightly's rotation
    (the seals call it expired) and out of `every_sealed_day`; the expiry records, weighed every
    night, find it."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    record = seal.Expiry(
        "2000-01-01", keys.day_prefix("", FIRST), await manifest_links(store, FIRST), "30d", seal.utc_text(STORED)
    )
    await forge_expiry(store, record, STORED)
    nightly = await Verifier(store, "", clock=FakeClock(STORED), retention=THIRTY_DAYS).verify(
        [SECOND], deep=True, every_sealed_day=True
    )
    assert problems(nightly) == [
        "the expiry record of 2000-01-01 (seal 3) names the folder 2026/11/01/, not its day's (2000/01/01/)"
    ]


# -- an expiry record made "in the future" -------------------------------------------------------


async def test_an_expiry_record_dated_after_now_is_a_problem(sim: Simulator, tmp_path: Path) -> None:
    """A forged record that the four-day-old first day expired under 30 days, dated a month ahead
    so that it looks lawful: a record's time must have come, and be no later than its seal's."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    ahead = datetime(2026, 12, 15, tzinfo=UTC)
    record = seal.Expiry(
        FIRST.isoformat(), keys.day_prefix("", FIRST), await manifest_links(store, FIRST), "30d", seal.utc_text(ahead)
    )
    await forge_expiry(store, record, STORED)  # the seal itself says it was written now
    report = await Verifier(store, "", clock=FakeClock(STORED), retention=THIRTY_DAYS).verify(None)
    assert problems(report) == [
        "the expiry record of 2026-11-01 (seal 3) is dated 2026-12-15T00:00:00Z, after its own seal (2026-11-05T09:00:00Z)"
    ]


async def test_an_expire_run_with_a_clock_ahead_is_found_by_verify(sim: Simulator, tmp_path: Path) -> None:
    """The unlucky operator: the machine's clock is a year ahead (an RTC reset, a bad NTP source)
    when the daily expire runs on a folder store (no server clock refuses its requests). Both
    days, which retention keeps, are removed and recorded at the wrong time. Verify, run later
    with the right time, says the records were sealed ahead of its clock."""
    root = await folder_archive(sim, tmp_path)
    ahead = FakeClock(datetime(2027, 11, 5, 9, tzinfo=UTC))
    report = await expirer(LocalStore(root), ahead).run()
    assert {d.day for d in report.days} == {FIRST, SECOND}
    right = FakeClock(STORED + timedelta(days=1))
    verified = await Verifier(LocalStore(root), "", clock=right, retention=THIRTY_DAYS).verify(None)
    early = [p for p in problems(verified) if "ahead of this verify's clock (2026-11-06T09:00:00Z)" in p]
    assert len(early) == 2, problems(verified)


# -- a record added to a closed, sealed day -------------------------------------------------------


def forge_revision(root: Path, call_id: str, changes: dict[str, object]) -> Path:
    """A revision of a call of the first day (closed, sealed), as a writer to the bucket adds it:
    it supersedes the call's record as a revision does, with *changes* to what it says."""
    folder = root / "2026" / "11" / "01"
    current = json.loads((folder / f"{call_id}.json").read_bytes())
    forged = {**current, "revision": 2, "supersedes": f"2026/11/01/{call_id}.json", "reason": "a correction"}
    forged.update(changes)
    path = folder / f"{call_id}.rev2.json"
    path.write_text(json.dumps(forged, indent=2) + "\n")
    return path


async def test_a_revision_added_to_a_sealed_day_with_an_archived_at_ahead_is_a_problem(
    sim: Simulator, tmp_path: Path
) -> None:
    """A writer adds a revision to a sealed day that rewrites the call's CDR (another caller) and
    gives it an `archived_at` in 2099, so that it would wait for an addendum for ever. A revision
    keeps its predecessor's CDR; and a record dated ahead of now is not the archiver's."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    current = json.loads((root / "2026" / "11" / "01" / f"{call_id}.json").read_bytes())
    cdr = {**current["cdr"], "caller": "0900000000"} if isinstance(current.get("cdr"), dict) else current["cdr"]
    forge_revision(root, call_id, {"cdr": cdr, "archived_at": "2099-01-01T00:00:00Z"})
    report = await Verifier(store, "", clock=FakeClock(STORED + timedelta(days=30))).verify(None)
    assert "revision 2 is not one the archiver writes: it rewrites the call's CDR, which a revision keeps as it is" in (
        problems(report)
    )
    assert any("dated 2099-01-01T00:00:00Z, ahead of now: not written by the archiver" in p for p in problems(report))


async def test_a_revision_added_to_a_sealed_day_without_archived_at_is_a_problem(
    sim: Simulator, tmp_path: Path
) -> None:
    """A revision that gives no time it was stored (otherwise a true copy) is not the archiver's:
    a problem at once, not a record waiting for its addendum for ever."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    forge_revision(root, call_id, {"archived_at": None})
    report = await Verifier(store, "", clock=FakeClock(STORED + timedelta(days=30))).verify(None)
    assert any("in no manifest, and it gives no time it was stored" in p for p in problems(report)), problems(report)
    assert report.unmanifested == 0


async def test_a_forged_erasure_of_a_sealed_call_is_a_problem(sim: Simulator, tmp_path: Path) -> None:
    """A writer deletes a sealed recording and covers it with an erasure revision of the call (the
    size and SHA-256 copied from its record, as erase writes them), dated ahead so that it waits
    for an addendum for ever. It is counted as an erasure, and it is a problem: dated ahead."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    folder = root / "2026" / "11" / "01"
    rec = json.loads((folder / f"{call_id}.json").read_bytes())["recording"]
    erased = {
        "status": "erased",
        "reason": "DSR-1",
        "erased_at": "2099-01-01T00:00:00Z",
        "removed": [{"key": rec["key"], "size": rec["size"], "sha256": rec["sha256"]}],
    }
    forge_revision(root, call_id, {"recording": erased, "archived_at": "2099-01-01T00:00:00Z"})
    (root / rec["key"]).unlink()
    report = await Verifier(store, "", clock=FakeClock(STORED + timedelta(days=30))).verify(None)
    assert report.erased == 1  # the forgery is read as an erasure
    assert [p.call_id for p in report.problems] == [call_id], problems(report)
    assert "ahead of now: not written by the archiver" in report.problems[0].what


async def test_a_revision_that_swaps_a_sealed_calls_recording_is_a_problem(sim: Simulator, tmp_path: Path) -> None:
    """A writer adds a revision that names a new recording for a sealed call (other audio, under
    `{call_id}.rev2.wav`, with its true size and SHA-256). No archiver revision replaces an
    archived recording with another (rearchive corrects missing, rejected and none; erase
    removes): only an erasure follows an archived recording, whenever the revision says it was
    written, and whatever the day closer or a backfill does with it."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    folder = root / "2026" / "11" / "01"
    rec = json.loads((folder / f"{call_id}.json").read_bytes())["recording"]
    original = (root / rec["key"]).read_bytes()
    other = original[:64] + bytes(b ^ 0x55 for b in original[64:])
    ext = rec["key"].rsplit(".", 1)[1]
    new_key = f"2026/11/01/{call_id}.rev2.{ext}"
    (root / new_key).write_bytes(other)
    swapped = {**rec, "key": new_key, "sha256": hashlib.sha256(other).hexdigest(), "size": len(other)}
    forge_revision(root, call_id, {"recording": swapped, "archived_at": "2099-01-01T00:00:00Z"})
    report = await Verifier(store, "", clock=FakeClock(STORED + timedelta(days=30))).verify(None, deep=True)
    swap = "revision 2 is not one the archiver writes: it says 'archived' of a call whose recording was archived"
    assert any(p.startswith(swap) for p in problems(report)), problems(report)
    # The same revision dated as the archiver would date it, and old by the store's clock: the day
    # closer leaves it out of the addendum a backfill writes, and verify still names it.
    forged = forge_revision(root, call_id, {"recording": swapped, "archived_at": seal.utc_text(STORED)})
    long_ago = time.time() - timedelta(days=3).total_seconds()
    os.utime(forged, (long_ago, long_ago))
    config = config_for(sim, f"file://{root}", tmp_path)
    with capture_logs() as logs:
        await backfill(
            config,
            clock=FakeClock(STORED + timedelta(days=3)),
            since=datetime(2026, 11, 1, tzinfo=TZ),
            until=datetime(2026, 11, 2, tzinfo=TZ),
        )
    assert [e["key"] for e in logs if e["event"] == "day.record_refused"] == [f"2026/11/01/{call_id}.rev2.json"]
    assert not any(f"{call_id}.rev2" in m.read_text() for m in folder.glob("manifest*"))
    again = await Verifier(store, "", clock=FakeClock(STORED + timedelta(days=3))).verify(None)
    assert any(p.startswith(swap) for p in problems(again)), problems(again)


# -- expire: a removal refused after the record ---------------------------------------------------


async def test_an_expired_day_whose_removal_was_refused_is_a_problem_once_overdue(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """Expire records the first day's expiry, then the store refuses every delete (credentials
    without s3:DeleteObjectVersion; no Object Lock). The recordings stay. Within EXPIRY_GRACE that
    is history (the next expire removes them); two days on, personal data kept past retention
    with no lock or legal hold to keep it is a problem that says what to grant."""
    bucket = make_bucket(moto_server.endpoint, versioned=False)
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    clock = FakeClock(EXPIRY_TIME)
    with FaultProxy(bucket.endpoint, delete_errors(lambda key: "AccessDenied")) as proxy:
        store = s3_store(proxy.endpoint, bucket.name, now=lambda: EXPIRY_TIME)
        with pytest.raises(Exception, match="refused to delete"):
            await expirer(store, clock, prefix="archive").run()
        await store.aclose()
    folder = keys.day_prefix("archive", FIRST)
    assert any(k.endswith(".wav") or k.endswith(".mp3") for k in bucket.objects(folder))  # the audio is there
    store = s3_store(bucket.endpoint, bucket.name)
    # Two days on (EXPIRY_GRACE: the daily expire has come round twice), before the second day is due.
    later = FakeClock(EXPIRY_TIME + timedelta(days=2))
    report = await Verifier(store, "archive", clock=later, retention=THIRTY_DAYS).verify(None)
    await store.aclose()
    [overdue] = report.problems
    assert overdue.key == "archive/2026/11/01/"
    assert "remain with no lock or legal hold that keeps them" in overdue.what
    assert "s3:DeleteObjectVersion" in overdue.what


# -- the nightly verify and a seal head recorded elsewhere ----------------------------------------


async def test_the_nightly_verify_checks_the_recorded_seal_it_is_given(sim: Simulator, tmp_path: Path) -> None:
    """`verify --recent N --recorded-seal SHA256`, as the README advises for the timer: a head
    recorded elsewhere that the chain no longer has fails the nightly as it fails a whole verify."""
    root = await folder_archive(sim, tmp_path)
    raw = config_dict(api=sim, storage=f"file://{root}", state=tmp_path / "auditor.sqlite3")
    config = write_config(tmp_path / "auditor.yaml", raw)
    not_in_chain = "ab" * 32  # a head recorded elsewhere that the (rewritten) chain no longer has
    full = run_cli("verify", "-c", str(config), "--recorded-seal", not_in_chain)
    assert full.returncode == 1, full.stdout + full.stderr
    nightly = run_cli("verify", "-c", str(config), "--recent", "1", "--recorded-seal", not_in_chain)
    assert nightly.returncode == 1, nightly.stdout + nightly.stderr
    assert f"no seal has the recorded SHA-256 {not_in_chain}" in nightly.stdout
    head = run_cli("verify", "-c", str(config), "--json").stdout
    recorded = json.loads(head)["seal_head"]["sha256"]
    kept = run_cli("verify", "-c", str(config), "--recent", "1", "--recorded-seal", recorded)
    assert kept.returncode == 0, kept.stdout + kept.stderr


# -- the store's checksum that the store did not compute -------------------------------------------


async def swap_with_forged_checksum(bucket: Bucket, store: Store, *, metadata: bool = False) -> None:
    """A recording of the first day rewritten, as a writer with its own client would, with other
    bytes of its size sent with the original's SHA-256 as their ChecksumSHA256 (and, *metadata*,
    as their ``sha256`` metadata)."""
    listing = await list_day(store, "archive", FIRST)
    rec = json.loads(await store.read(listing.sidecars[next(iter(listing.audio))]))["recording"]
    original = bucket.objects()[rec["key"]]
    bucket.client.put_object(
        Bucket=bucket.name,
        Key=rec["key"],
        Body=original[:64] + bytes(b ^ 0x55 for b in original[64:]),
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(bytes.fromhex(rec["sha256"])).decode(),
        Metadata={"sha256": rec["sha256"]} if metadata else {},
    )


async def test_a_swap_carrying_a_forged_checksum_on_a_store_that_keeps_it_unchecked_is_found(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """moto keeps the ChecksumSHA256 it is sent without checking it (`checksum_kept` says "kept
    unchecked"; so may other S3-compatible stores). A same-size swap sent with the original's
    digest as its ChecksumSHA256 carries a checksum the writer chose: verify asks the store
    first, and where it keeps checksums unchecked reads and hashes every recording."""
    bucket = make_bucket(moto_server.endpoint, versioned=False)
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint), clock=FakeClock(STORED))
    store = s3_store(bucket.endpoint, bucket.name)
    assert await store.checksum_kept("archive/_archiver/probe") == "kept unchecked"
    await swap_with_forged_checksum(bucket, store)
    verifier = Verifier(store, "archive", clock=FakeClock(STORED), checksum_probe=PROBE)
    report = await verifier.verify(None)
    await store.aclose()
    assert report.store_checksums == "kept unchecked"
    assert report.store_checked == 0
    assert problems(report) == ["the recording's SHA-256 differs from the sidecar's: its bytes changed"]


async def test_a_cold_swap_carrying_a_forged_checksum_is_a_problem_on_a_store_that_keeps_it_unchecked(
    sim: Simulator, moto_server: MotoServer, tmp_path: Path
) -> None:
    """The same in DEEP_ARCHIVE, where `--deep` (the nightly's) cannot read the bytes: the
    writer-supplied checksum is all there is, and a store that checks none cannot vouch for it."""
    bucket = make_bucket(moto_server.endpoint, versioned=False)
    storage = {"storage_class": "DEEP_ARCHIVE"}
    await backfill(
        config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=storage), clock=FakeClock(STORED)
    )
    store = s3_store(bucket.endpoint, bucket.name)
    listing = await list_day(store, "archive", FIRST)
    call_id = next(iter(listing.audio))
    rec = json.loads(await store.read(listing.sidecars[call_id]))["recording"]
    bucket.client.put_object(
        Bucket=bucket.name,
        Key=rec["key"],
        Body=bytes(rec["size"]),  # silence of the same length
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(bytes.fromhex(rec["sha256"])).decode(),
        StorageClass="DEEP_ARCHIVE",
    )
    report = await Verifier(store, "archive", clock=FakeClock(STORED), checksum_probe=PROBE).verify(None, deep=True)
    await store.aclose()
    assert report.cold == 0
    cold = [p for p in report.problems if "in cold storage, and the store checks no checksum" in p.what]
    assert len(cold) == report.recordings  # every one: the store can vouch for none of them
    assert call_id in {p.call_id for p in cold}


def multipart_unmarked(request: S3Request, forward: Forward) -> Answer | None:
    """A store whose HEAD of a multipart object gives its ETag and its composite ChecksumSHA256
    without the "-N" and no x-amz-checksum-type (the code's own comment: "some stores leave out
    the -N"; an ETag that is not an MD5 with a part count, as with some encryption settings)."""
    if request.operation != "HeadObject":
        return None
    answer = forward()
    headers = []
    for name, value in answer.headers:
        low = name.lower()
        if low == "x-amz-checksum-type":
            continue
        if low in ("etag", "x-amz-checksum-sha256"):
            value = re.sub(r"-\d+", "", value)
        headers.append((name, value))
    return Answer(answer.status, answer.body, headers)


async def test_a_recording_in_parts_whose_store_leaves_out_the_part_count_is_not_called_changed(
    bucket: Bucket,
) -> None:
    """The archive's own recording, uploaded in parts; its record states the composite checksum the
    upload returned. Where the store's HEAD does not mark the checksum as a composite, it reads as
    a whole-object SHA-256: it agrees with the composite the record states, and the recording is
    whole. (Other bytes would agree with neither.)"""
    store = s3_store(bucket.endpoint, bucket.name, multipart_threshold=1, part_size=5 << 20)
    data = b"RIFF" + bytes(range(256)) * 41000  # three parts
    digest = hashlib.sha256(data).digest()
    key = "archive/2026/11/01/09dc3fa8-ba86-11e5-a8af-dbc80e22bddb.wav"
    composite = await store.put(key, io.BytesIO(data), size=len(data), sha256=digest, content_type="audio/wav")
    await store.aclose()
    rec = {"key": key, "size": len(data), "sha256": digest.hex(), "composite_sha256": composite}
    with FaultProxy(bucket.endpoint, multipart_unmarked) as proxy:
        odd = s3_store(proxy.endpoint, bucket.name)
        report = VerifyReport()
        checker = RecordChecker(odd, limiter=anyio.CapacityLimiter(1), rng=random.Random(1))
        await checker.check_recording("09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", rec, report, rehash=False)
        other = {**rec, "composite_sha256": base64.b64encode(hashlib.sha256(b"other parts").digest()).decode()}
        changed = VerifyReport()
        await checker.check_recording("09dc3fa8-ba86-11e5-a8af-dbc80e22bddb", other, changed, rehash=False)
        await odd.aclose()
    assert problems(report) == []
    assert report.store_checked == 1
    assert problems(changed) == ["the store's own checksum of the recording differs from its record: its bytes changed"]


# -- a record no manifest names that is not a record ----------------------------------------------


async def test_a_backfill_over_a_day_holding_an_unreadable_record_leaves_it_out_and_says_so(
    sim: Simulator, tmp_path: Path
) -> None:
    """A file named as a call's record but not JSON (a truncated upload by another tool, or a
    writer's junk) in a closed day. A backfill over the day re-opens it (the file is in no
    manifest); its close leaves the file out of the addendum with a warning, and the backfill
    ends as it would. Verify names the file."""
    root = await folder_archive(sim, tmp_path)
    config = config_for(sim, f"file://{root}", tmp_path)
    junk = "2026/11/01/0badc0de-0000-4000-8000-000000000000.json"
    (root / junk).write_bytes(b'{"schema": "ccall-arc')
    manifests = sorted((root / "2026" / "11" / "01").glob("manifest*"))
    with capture_logs() as logs:
        report = await backfill(
            config,
            clock=FakeClock(STORED + timedelta(days=3)),
            since=datetime(2026, 11, 1, tzinfo=TZ),
            until=datetime(2026, 11, 2, tzinfo=TZ),
        )
    assert report.failed == []
    [refused] = [e for e in logs if e["event"] == "day.record_refused"]
    assert refused["key"] == junk
    assert "not a sidecar document" in refused["reason"]
    assert sorted((root / "2026" / "11" / "01").glob("manifest*")) == manifests  # no addendum for junk
    verified = await Verifier(LocalStore(root), "", clock=FakeClock(STORED + timedelta(days=3))).verify(None)
    assert [(p.key, p.what) for p in verified.problems] == [(junk, "the sidecar is not valid JSON")]


# -- same-size swaps where the store keeps no checksum -----------------------------------------------


async def test_a_same_size_swap_with_forged_checksum_and_metadata_is_found_on_ceph_rgw(
    sim: Simulator, rgw_bucket: Bucket, tmp_path: Path
) -> None:
    """Ceph RGW 16 keeps no ChecksumSHA256: every recording is read and hashed by plain verify, and
    a swap carrying the original digest as checksum and as metadata is found."""
    await backfill(config_for(sim, rgw_bucket.url, tmp_path, endpoint=rgw_bucket.endpoint), clock=FakeClock(STORED))
    store = s3_store(rgw_bucket.endpoint, rgw_bucket.name)
    await swap_with_forged_checksum(rgw_bucket, store, metadata=True)
    report = await Verifier(store, "archive", clock=FakeClock(STORED)).verify(None)
    await store.aclose()
    assert "the recording's SHA-256 differs from the sidecar's: its bytes changed" in problems(report)
    assert report.store_checked == 0


async def test_a_same_size_swap_in_a_folder_store_is_found_by_plain_verify(sim: Simulator, tmp_path: Path) -> None:
    """A folder keeps no checksum of its own: plain verify reads every recording."""
    root = await folder_archive(sim, tmp_path)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    rec = json.loads((root / "2026" / "11" / "01" / f"{call_id}.json").read_bytes())["recording"]
    path = root / rec["key"]
    data = path.read_bytes()
    path.write_bytes(data[:64] + bytes(b ^ 0x55 for b in data[64:]))
    report = await Verifier(store, "", clock=FakeClock(STORED)).verify(None)
    assert "the recording's SHA-256 differs from the sidecar's: its bytes changed" in problems(report)
