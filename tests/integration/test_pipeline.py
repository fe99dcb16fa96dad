"""The pipeline end to end: simulator over HTTP → archiver → S3 (moto over HTTP) or a folder."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver.compose import assemble
from archiver.config.models import Config
from archiver.core.keys import audio_key, sidecar_key
from archiver.core.outcome import RecordingStatus
from archiver.core.report import RunReport
from archiver.errors import ApiUnavailable
from archiver.simulator import Dataset, Faults, SimCall, Simulator
from archiver.state.ledger import Ledger
from tests.helpers import (
    FAST,
    PATIENT_STORE,
    SINCE,
    TZ,
    UNTIL,
    Bucket,
    FakeClock,
    OnProgress,
    assert_archive_is_complete,
    backfill,
    call_id,
    check_sidecar,
    config_for,
    is_sidecar,
    local_objects,
    poll,
    read_target,
)

pytestmark = pytest.mark.anyio


async def test_a_backfill_archives_every_call_and_a_second_writes_nothing(
    sim: Simulator, tmp_path: Path, target: tuple[str, str | None, str], request: pytest.FixtureRequest
) -> None:
    """Every recording byte-identical, one sidecar per call (with and without recording); re-run is a no-op."""
    config = config_for(sim, target[0], tmp_path, endpoint=target[1])
    with capture_logs() as logs:
        report = await backfill(config)
    calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
    objects = read_target(target, tmp_path, request)
    assert_archive_is_complete(objects, sim, calls, target[2])
    recorded = sum(1 for c in calls if c.has_recording)
    assert report.outcomes == {"archived": recorded, "none": len(calls) - recorded, "missing": 0, "rejected": 0}
    assert report.complete
    assert report.bytes == sum(c.recording_size for c in calls if c.has_recording)
    archived_events = [e for e in logs if e["event"] == "call.archived"]
    assert len(archived_events) == len(calls)
    assert {"call_id", "key", "size", "seconds", "status"} <= set(archived_events[0])

    again = await backfill(config)
    assert again.done == 0
    assert again.skipped >= len(calls)
    assert read_target(target, tmp_path, request) == objects
    if target[1] is not None:
        bucket: Bucket = request.getfixturevalue("bucket")
        assert len(bucket.versions()) == len(objects)  # nothing was written twice


async def test_a_lost_ledger_is_rebuilt_from_the_bucket_without_duplicates(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """With the ledger deleted, a re-run lists each day's sidecars and writes nothing."""
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint)
    first = await backfill(config)
    versions = len(bucket.versions())
    config.state.path.unlink()
    with capture_logs() as logs:
        again = await backfill(config)
    assert again.done == 0
    assert again.skipped >= first.done
    assert len(bucket.versions()) == versions
    assert not [e for e in logs if e["event"] in ("recording.already_stored", "sidecar.already_stored")]


async def archived_bucket(sim: Simulator, tmp_path: Path, bucket: Bucket) -> tuple[Config, SimCall, str, str]:
    """Backfill into *bucket*; the config, one recorded call, and its sidecar and audio keys."""
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint)
    await backfill(config)
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording)
    return (
        config,
        call,
        sidecar_key("archive", call.start.date(), call.uuid),
        audio_key("archive", call.start.date(), call.uuid, "wav"),
    )


async def test_an_audio_object_without_its_sidecar_is_verified_and_completed(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """After a crash between audio and sidecar, the audio is checked against a fresh download, not rewritten."""
    config, call, skey, akey = await archived_bucket(sim, tmp_path, bucket)
    bucket.purge(skey)  # never written: a crash, not a deletion (that is put back: test_repair)
    config.state.path.unlink()
    with capture_logs() as logs:
        report = await backfill(config)
    assert report.outcomes[RecordingStatus.ARCHIVED] == 1
    assert {"event": "recording.already_stored", "key": akey, "log_level": "info"} in logs
    assert (
        json.loads(bucket.objects()[skey])["recording"]["sha256"]
        == hashlib.sha256(sim.dataset.recording_bytes(call)).hexdigest()
    )
    audio_versions = [v for v in bucket.versions() if v["Key"] == akey]
    assert len(audio_versions) == 1


async def test_different_bytes_under_a_calls_key_are_reported_and_kept(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """If the bucket holds other bytes than the source serves, the call fails loudly; nothing is overwritten."""
    config, call, skey, akey = await archived_bucket(sim, tmp_path, bucket)
    bucket.client.put_object(Bucket=bucket.name, Key=akey, Body=b"RIFF tampered")
    bucket.purge(skey)
    config.state.path.unlink()
    report = await backfill(config)
    assert [cid for cid, _ in report.failed] == [call.uuid]
    assert "differ from the recording now served" in report.failed[0][1]
    assert not report.complete
    assert bucket.objects()[akey] == b"RIFF tampered"
    assert skey not in bucket.objects()


async def test_late_recordings_are_parked_then_archived_by_the_daemon(
    dataset: Dataset, tmp_path: Path, bucket: Bucket
) -> None:
    """A 404 on a fresh call parks it with a retry time; a later poll archives it."""
    clock = FakeClock(datetime(2026, 11, 1, 17, 0, tzinfo=TZ))
    with Simulator(dataset, faults=Faults(recording_delay=900), now=clock.now) as sim:
        config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, download={"missing_after": "6h"})
        first = await backfill(config, SINCE, clock.now(), clock)
        late = [
            c
            for c in dataset.calls_between(SINCE, clock.now(), clock.now())
            if c.has_recording and c.end > clock.now() - timedelta(seconds=900)
        ]
        assert late, "the dataset should have calls that ended in the last 15 minutes"
        assert sorted(first.parked) == sorted(c.uuid for c in late)
        assert not first.complete
        for call in late:
            assert sidecar_key("archive", call.start.date(), call.uuid) not in bucket.objects()

        clock.advance(minutes=20)
        report = await poll(config, clock, lookback=timedelta(hours=2))
        assert not report.parked
        objects = bucket.objects()
        for call in late:
            doc = json.loads(objects[sidecar_key("archive", call.start.date(), call.uuid)])
            assert doc["recording"]["status"] == "archived"


async def backfill_checked(
    dataset: Dataset, tmp_path: Path, bucket: Bucket
) -> tuple[RunReport, list[SimCall], dict[str, dict[str, Any]]]:
    """Backfill *dataset* into *bucket* and check the archive is complete; the report, calls and sidecars."""
    with Simulator(dataset) as sim:
        config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint)
        report = await backfill(config)
        calls = dataset.calls_between(SINCE, UNTIL, sim.now())
        return report, calls, assert_archive_is_complete(bucket.objects(), sim, calls, "archive")


async def test_dead_links_are_recorded_as_missing_with_what_was_tried(tmp_path: Path, bucket: Bucket) -> None:
    """A link that never serves, past missing_after, gets a 'missing' sidecar with attempts and the last error."""
    dataset = Dataset(seed=5, calls_per_day=30, max_duration=4, recording_missing_rate=0.3)
    report, calls, sidecars = await backfill_checked(dataset, tmp_path, bucket)
    dead = [c for c in calls if c.recording_missing]
    assert dead
    assert report.outcomes[RecordingStatus.MISSING] == len(dead)
    assert report.complete
    rec = sidecars[dead[0].uuid]["recording"]
    assert rec["attempts"] == 1
    assert rec["last_error"]["kind"] == "not_found"
    assert rec["last_error"]["http_status"] == 404
    assert rec["source_url"].endswith(dead[0].recording_path())


async def test_a_dead_link_whose_audio_a_crashed_run_stored_is_completed_from_it(
    tmp_path: Path, bucket: Bucket
) -> None:
    """A crash left a call's audio without its sidecar, and the link has died since: past
    missing_after the call is completed from the stored audio (read back and verified as a
    download is), never recorded missing over it. Bytes there that are no recording are a
    conflict: nothing is written for that call."""
    dataset = Dataset(seed=5, calls_per_day=30, max_duration=4, recording_missing_rate=0.3)
    with Simulator(dataset) as sim:
        calls = dataset.calls_between(SINCE, UNTIL, sim.now())
        dead, garbled = [c for c in calls if c.recording_missing][:2]
        audio = dataset.recording_bytes(dead)
        key = f"archive/{dead.start:%Y/%m/%d}/{dead.uuid}.wav"
        junk = f"archive/{garbled.start:%Y/%m/%d}/{garbled.uuid}.wav"
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=audio)  # what the crashed run left
        bucket.client.put_object(Bucket=bucket.name, Key=junk, Body=b"<html>no</html>")
        with capture_logs() as logs:
            report = await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint))
    objects = bucket.objects()
    doc = json.loads(objects[key.replace(".wav", ".json")])
    check_sidecar(doc)
    rec = doc["recording"]
    assert (rec["status"], rec["key"], rec["size"]) == ("archived", key, len(audio))
    assert rec["sha256"] == hashlib.sha256(audio).hexdigest()
    assert rec["completed_from_store"].startswith("stored by an earlier run that did not finish the call")
    assert rec["audio"]["sample_rate"] == 8000
    assert [e["call_id"] for e in logs if e["event"] == "call.completed_from_store"] == [dead.uuid]
    assert report.outcomes[RecordingStatus.MISSING] == sum(c.recording_missing for c in calls) - 2
    assert junk.replace(".wav", ".json") not in objects  # the conflict is reported, not recorded
    assert any(garbled.uuid in str(failure) for failure in report.failed)


async def test_links_to_other_hosts_are_rejected_and_recorded(tmp_path: Path, bucket: Bucket) -> None:
    """A link to a host that is not allowed is never fetched; its sidecar says why."""
    dataset = Dataset(seed=9, calls_per_day=30, max_duration=4, foreign_link_rate=0.3)
    report, calls, sidecars = await backfill_checked(dataset, tmp_path, bucket)
    foreign = [c for c in calls if c.foreign_link]
    assert foreign
    assert report.outcomes[RecordingStatus.REJECTED] == len(foreign)
    reason = sidecars[foreign[0].uuid]["recording"]["reason"]
    assert reason["kind"] == "host_not_allowed"
    assert "169.254.169.254" in reason["message"]


async def test_the_daemon_archives_calls_as_they_end_and_catches_up_after_downtime(
    dataset: Dataset, tmp_path: Path
) -> None:
    """Each poll archives what ended before now - settle; after a day down, it catches up from its cursor."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    root = tmp_path / "archive"
    with Simulator(dataset, now=clock.now) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)
        await poll(config, clock)
        clock.advance(minutes=30)
        await poll(config, clock)
        settled = clock.now() - timedelta(minutes=1)
        window = dataset.calls_between(datetime(2026, 11, 1, 9, 0, tzinfo=TZ), settled, clock.now())
        ended = [c for c in window if c.end <= settled]
        assert len(ended) >= 2
        stored = local_objects(root)
        for call in ended:
            assert sidecar_key("", call.start.date(), call_id(sim, call)) in stored

        clock.advance(days=1)  # down for a day: far more than the lookback
        await poll(config, clock)
        caught_up = dataset.calls_between(
            datetime(2026, 11, 1, 10, 0, tzinfo=TZ), clock.now() - timedelta(hours=2), clock.now()
        )
        stored = local_objects(root)
        assert caught_up
        for call in caught_up:
            assert sidecar_key("", call.start.date(), call_id(sim, call)) in stored


async def test_the_sidecar_describes_the_call_and_its_recording(sim: Simulator, tmp_path: Path) -> None:
    """An archived call's sidecar carries the parsed call and the audio parameters."""
    config = config_for(sim, f"file://{tmp_path / 'archive'}", tmp_path)
    await backfill(config)
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording)
    doc = json.loads((tmp_path / "archive" / sidecar_key("", call.start.date(), call.uuid)).read_text())
    assert doc["call"]["start_local"] == call.start.isoformat()
    assert doc["call"]["duration_seconds"] == call.duration
    assert doc["call"]["direction"] == call.direction
    assert doc["recording"]["format"] == "wav"
    assert doc["recording"]["audio"] == {
        "duration_seconds": call.duration,
        "sample_rate": 8000,
        "channels": 1,
        "bits_per_sample": 16,
    }
    assert doc["source"] == {"host": "127.0.0.1", "domain_name": None}
    assert doc["archived_at"].endswith("Z")
    assert sim.api_secret not in json.dumps(doc)


async def test_an_api_outage_mid_run_lets_calls_in_flight_finish_then_fails(dataset: Dataset, tmp_path: Path) -> None:
    """When the API stops answering, the calls already handed out are completed; no audio lacks its sidecar."""
    root = tmp_path / "archive"
    with Simulator(dataset) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)

        def break_api_after_three(report: RunReport) -> None:
            if report.done >= 3:
                sim.faults.api_error_rate = 1.0

        async with assemble(
            config,
            api_retry=FAST,
            download_retry=FAST,
            store_retry=PATIENT_STORE,
            observers=[OnProgress(break_api_after_three)],
        ) as parts:
            with pytest.raises(ApiUnavailable, match="answered HTTP 50"):
                await parts.archiver.backfill(SINCE, UNTIL)
            assert parts.ledger.calls.count_done() >= 3
    stored = local_objects(root)
    audio = {k.rsplit(".", 1)[0] for k in stored if k.endswith(".wav")}
    sidecars = {k.rsplit(".", 1)[0] for k in stored if is_sidecar(k)}
    assert audio <= sidecars
    assert len(sidecars) >= 3


async def test_long_calls_that_appear_hours_after_their_start_are_archived(tmp_path: Path) -> None:
    """A CDR filed under its start time but written at its end, hours later, is caught by the lookback."""
    dataset = Dataset(seed=21, calls_per_day=40, max_duration=4, long_call_rate=0.15, long_call_seconds=5400)
    clock = FakeClock(datetime(2026, 11, 1, 8, 0, tzinfo=TZ))
    root = tmp_path / "archive"
    with Simulator(dataset, now=clock.now) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)
        while clock.now() < datetime(2026, 11, 1, 19, 30, tzinfo=TZ):
            await poll(config, clock, lookback=timedelta(hours=3))
            clock.advance(minutes=30)
        settled = clock.now() - timedelta(minutes=31)
        late = [
            c
            for c in dataset.calls_on(SINCE.date())
            if c.duration == 5400 and c.end <= settled and c.start >= datetime(2026, 11, 1, 8, 0, tzinfo=TZ)
        ]
        assert late, "the dataset should have long calls that ended during the polls"
        stored = local_objects(root)
        for call in late:
            assert sidecar_key("", call.start.date(), call.uuid) in stored
            assert stored[audio_key("", call.start.date(), call.uuid, "wav")] == dataset.recording_bytes(call)


def block_a_recent_call(dataset: Dataset, root: Path, clock: FakeClock) -> tuple[SimCall, Path]:
    """A recorded call of the last hour whose audio key already holds other bytes: it fails every
    run (a conflict) until the blocker is removed. The call, and the blocking file."""
    window = dataset.calls_between(clock.now() - timedelta(hours=1), clock.now() - timedelta(minutes=5), clock.now())
    poison = next(c for c in window if c.serves_recording)
    blocker = root / audio_key("", poison.start.date(), poison.uuid, "wav")
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"RIFF other bytes")
    return poison, blocker


async def test_a_call_that_fails_run_after_run_is_set_aside_and_no_longer_holds_the_cursor(
    dataset: Dataset, tmp_path: Path
) -> None:
    """After three failed polls a poison call is quarantined: the cursor moves on, status names it,
    the daemon leaves it alone until its slow retry, and a retry that succeeds clears it."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    root = tmp_path / "archive"
    with Simulator(dataset, now=clock.now) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)
        poison, blocker = block_a_recent_call(dataset, root, clock)
        reports = []
        for _ in range(4):
            reports.append(await poll(config, clock))
            clock.advance(minutes=2)
        ledger = Ledger.open(config.state.path, store_identity=config.storage.url)
        try:
            status = ledger.progress.status(clock.now())
            cursor = ledger.progress.cursor()
        finally:
            ledger.close()
        assert [poison.uuid in dict(r.failed) for r in reports] == [True, True, True, False]  # left alone after
        assert reports[2].quarantined == [poison.uuid]
        assert [q["call_id"] for q in status["quarantined"]] == [poison.uuid]
        assert status["failures"] == []
        assert cursor is not None
        assert cursor > poison.end
        blocker.unlink()  # someone dealt with the conflict
        clock.advance(hours=1)  # its slow retry is due
        retried = await poll(config, clock)
    assert retried.outcomes[RecordingStatus.ARCHIVED] >= 1
    assert (root / sidecar_key("", poison.start.date(), poison.uuid)).exists()
    ledger = Ledger.open(config.state.path, store_identity=config.storage.url)
    try:
        assert ledger.progress.status(clock.now())["quarantined"] == []
    finally:
        ledger.close()


async def test_rearchive_retries_a_quarantined_call_at_once(dataset: Dataset, tmp_path: Path) -> None:
    """An operator who fixed a poison call's cause need not wait for its slow retry: rearchive tries it now."""
    clock = FakeClock(datetime(2026, 11, 1, 10, 0, tzinfo=TZ))
    root = tmp_path / "archive"
    with Simulator(dataset, now=clock.now) as sim:
        config = config_for(sim, f"file://{root}", tmp_path)
        poison, blocker = block_a_recent_call(dataset, root, clock)
        for _ in range(3):
            await poll(config, clock)
            clock.advance(minutes=2)
        blocker.unlink()
        async with assemble(config, clock=clock, api_retry=FAST, download_retry=FAST) as parts:
            report = await parts.rearchiver.run(
                [poison.start.date()], statuses=frozenset({"missing"}), call_ids=frozenset(), dry_run=False
            )
            aside = parts.ledger.progress.status(clock.now())["quarantined"]
    assert [(r.call_id, r.after) for r in report.retried] == [(poison.uuid, "archived")]
    assert aside == []
    assert (root / sidecar_key("", poison.start.date(), poison.uuid)).exists()
