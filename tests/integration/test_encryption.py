"""Recordings encrypted before they leave the host (storage.encryption): the write path against moto
over HTTP, the keys in a bucket of their own; the crash between a key and its recording, and the
one between a recording and its sidecar; the keys store down while the archive is up."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from archiver.audit.encrypted import KeyChecker
from archiver.audit.plaintext import Decrypter
from archiver.audit.verify import Verifier
from archiver.config.models import Config
from archiver.core import dayfiles, encryption, keyobjects
from archiver.core.encryption import Identity
from archiver.core.keys import audio_key, sidecar_key
from archiver.core.outcome import RecordingStatus
from archiver.errors import StoreAccessError
from archiver.retry import RetryPolicy
from archiver.simulator import SimCall, Simulator
from archiver.store.keys import KeyStore
from tests.helpers import (
    SINCE,
    UNTIL,
    Bucket,
    ToggleProxy,
    age_identity,
    backfill,
    check_sidecar,
    config_for,
    encryption_section,
    local_objects,
    make_bucket,
    need_os_tools,
    s3_store,
)

pytestmark = pytest.mark.anyio
README = Path(__file__).resolve().parents[2] / "README.md"


def encrypted_config(sim: Simulator, tmp_path: Path, bucket: Bucket, keys: Bucket, *recipients: Identity) -> Config:
    section = encryption_section(f"s3://{keys.name}/keys", *recipients, identity_file=tmp_path / "age-identity")
    return config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=section)


def recorded(sim: Simulator) -> list[SimCall]:
    return [
        c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording and not c.recording_missing
    ]


def key_store(keys: Bucket) -> KeyStore:
    return KeyStore(s3_store(keys.endpoint, keys.name), "keys")


async def archived(
    sim: Simulator, tmp_path: Path, bucket: Bucket, keys: Bucket
) -> tuple[Config, Identity, SimCall, str, dict[str, Any]]:
    """An encrypted backfill: its config, the identity, one recorded call, its sidecar's key and
    record, that sidecar then gone (a crash before it) and the ledger lost."""
    identity = age_identity(tmp_path)
    config = encrypted_config(sim, tmp_path, bucket, keys, identity)
    await backfill(config)
    call = recorded(sim)[0]
    skey = sidecar_key("archive", call.start.date(), call.uuid)
    doc = json.loads(bucket.objects()[skey])
    bucket.purge(skey)
    config.state.path.unlink()
    return config, identity, call, skey, doc


async def test_an_encrypted_archive_holds_age_files_whose_records_state_both_digests(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    """Each recording is an age file under {call_id}.wav.age; its record states the ciphertext's size
    and SHA-256 (what manifests and seals cover) and the plaintext's (the download, verified); its
    key object and label are in the keys bucket; it decrypts, with the archive's identity, to the
    bytes the PBX served; a second run writes nothing."""
    keys = make_bucket(moto_server.endpoint)
    identity = age_identity(tmp_path)
    config = encrypted_config(sim, tmp_path, bucket, keys, identity, Identity.generate())
    report = await backfill(config)
    assert report.complete
    objects = bucket.objects()
    key_objects = keys.objects()
    decrypter = Decrypter(key_store(keys), [identity])
    store = s3_store(bucket.endpoint, bucket.name)
    fingerprint = encryption.recipients_fingerprint(config.storage.encryption.age_recipients)  # type: ignore[union-attr]
    for call in recorded(sim):
        day = call.start.date()
        served = sim.dataset.recording_bytes(call)
        key = audio_key("archive", day, call.uuid, "wav", encrypted=True)
        assert audio_key("archive", day, call.uuid, "wav") not in objects  # no plaintext copy
        ciphertext = objects[key]
        assert ciphertext.startswith(b"age-encryption.org/v1\n")
        assert served not in ciphertext
        doc = json.loads(objects[sidecar_key("archive", day, call.uuid)])
        check_sidecar(doc)
        rec = doc["recording"]
        assert (rec["key"], rec["size"], rec["sha256"]) == (
            key,
            len(ciphertext),
            hashlib.sha256(ciphertext).hexdigest(),
        )
        stated = rec["encryption"]
        assert (stated["plaintext_size"], stated["plaintext_sha256"]) == (
            len(served),
            hashlib.sha256(served).hexdigest(),
        )
        stem = keyobjects.stem("keys", day, call.uuid)
        tag = keyobjects.tag(stated["recipient"])
        assert stated["key_object"] == keyobjects.key_object_key(stem, tag, fingerprint)
        assert keyobjects.label_key(stem, tag) in key_objects
        opened = encryption.unwrap(key_objects[stated["key_object"]], [identity])
        assert encryption.public(opened) == stated["recipient"]
        pieces: list[bytes] = []
        await decrypter.decrypt(store, rec, pieces.append)
        assert b"".join(pieces) == served
    for manifest in (k for k in objects if k.endswith("manifest-sha256.txt")):
        lines = dayfiles.parse_manifest(objects[manifest].decode())
        folder = manifest.rsplit("/", 1)[0] + "/"
        for name, digest in lines.items():
            assert hashlib.sha256(objects[folder + name]).hexdigest() == digest  # sha256sum -c: the stored bytes
    versions = len(bucket.versions()), len(keys.versions())
    again = await backfill(config)
    assert again.done == 0
    assert (len(bucket.versions()), len(keys.versions())) == versions
    await store.aclose()


async def test_the_readme_age_commands_decrypt_a_recording_by_hand(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    """The README's two `age -d` commands, run as written with Debian's age on a key object and a
    recording fetched from the buckets, give back the bytes the PBX served."""
    need_os_tools("decrypting by hand", "age")
    keys = make_bucket(moto_server.endpoint)
    identity = age_identity(tmp_path)
    await backfill(encrypted_config(sim, tmp_path, bucket, keys, identity))
    call = recorded(sim)[0]
    doc = json.loads(bucket.objects()[sidecar_key("archive", call.start.date(), call.uuid)])
    work = tmp_path / "by-hand"
    work.mkdir()
    (work / "recording.age").write_bytes(bucket.objects()[doc["recording"]["key"]])
    (work / "key.age").write_bytes(keys.objects()[doc["recording"]["encryption"]["key_object"]])
    script = _readme_block("age:by-hand")
    env = {
        "PATH": "/usr/bin:/bin",
        "ARCHIVER_ETC": f"{tmp_path}/",
        "KEY_OBJECT": "key.age",
        "RECORDING": "recording.age",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (work / "call.wav").read_bytes() == sim.dataset.recording_bytes(call)


def _readme_block(marker: str) -> str:
    """The shell block after ``<!-- {marker} -->`` in the README."""
    text = README.read_text()
    after = text.split(f"<!-- {marker}", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


async def test_a_crash_between_recording_and_sidecar_is_completed_from_the_keys_label(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    """The archiver holds no identity, so it cannot decrypt what a crashed run stored: it reads the
    stored ciphertext, finds the label written with its key (same ciphertext digest, same plaintext
    digest as the download now), completes the sidecar with that key, and removes the key it made
    itself; the recording is never written twice."""
    keys = make_bucket(moto_server.endpoint)
    config, identity, _, skey, before = await archived(sim, tmp_path, bucket, keys)
    store = s3_store(bucket.endpoint, bucket.name)
    audit = await Verifier(store, "archive", keys=KeyChecker(store, key_store(keys))).verify(None)
    # (the day closed before the sidecar was taken away, so its manifest misses it too: the test's doing)
    assert "a recording without its sidecar" in [p.what.split(" (")[0] for p in audit.problems]
    assert any("whose sidecar is not written yet" in h.what for h in audit.history)  # its key, explained
    assert not [p for p in audit.problems if "keys" in p.key]
    key_versions = len(keys.versions())
    with capture_logs() as logs:
        report = await backfill(config)
    assert report.outcomes[RecordingStatus.ARCHIVED] == 1
    after = json.loads(bucket.objects()[skey])
    check_sidecar(after)
    assert after["recording"]["encryption"] == before["recording"]["encryption"]
    assert after["recording"]["sha256"] == before["recording"]["sha256"]
    assert [e["key"] for e in logs if e["event"] == "recording.already_stored"] == [before["recording"]["key"]]
    assert [e for e in logs if e["event"] == "key.discarded"]
    assert len([v for v in bucket.versions() if v["Key"] == before["recording"]["key"]]) == 1
    assert len(keys.versions()) == key_versions  # the key this run made is gone, every version
    await Decrypter(key_store(keys), [identity]).check(store, after["recording"])
    await store.aclose()


async def test_an_encrypted_recording_no_label_describes_or_of_other_audio_is_a_conflict(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    """Another ciphertext under a call's key (no label states it), or a label stating other audio
    than the PBX serves now: the call fails loudly and nothing is overwritten or recorded."""
    keys = make_bucket(moto_server.endpoint)
    identity = age_identity(tmp_path)
    config = encrypted_config(sim, tmp_path, bucket, keys, identity)
    await backfill(config)
    first, second = recorded(sim)[:2]
    planted = _encrypted(b"RIFF other audio", identity)
    doc = json.loads(bucket.objects()[sidecar_key("archive", first.start.date(), first.uuid)])
    bucket.client.put_object(Bucket=bucket.name, Key=doc["recording"]["key"], Body=planted)
    bucket.purge(sidecar_key("archive", first.start.date(), first.uuid))
    other = json.loads(bucket.objects()[sidecar_key("archive", second.start.date(), second.uuid)])
    stem = keyobjects.stem("keys", second.start.date(), second.uuid)
    label_key = keyobjects.label_key(stem, keyobjects.tag(other["recording"]["encryption"]["recipient"]))
    label = json.loads(keys.objects()[label_key])
    label["plaintext"]["sha256"] = "0" * 64
    keys.client.put_object(Bucket=keys.name, Key=label_key, Body=json.dumps(label).encode())
    bucket.purge(sidecar_key("archive", second.start.date(), second.uuid))
    config.state.path.unlink()
    report = await backfill(config)
    failures = dict(report.failed)
    assert "that no key label" in failures[first.uuid]
    assert "other audio" in failures[second.uuid]
    assert bucket.objects()[doc["recording"]["key"]] == planted
    for call in (first, second):
        assert sidecar_key("archive", call.start.date(), call.uuid) not in bucket.objects()


def _encrypted(data: bytes, identity: Identity) -> bytes:
    sink = io.BytesIO()
    encryption.encrypt(io.BytesIO(data), sink, encryption.public(identity))
    return sink.getvalue()


async def test_a_crash_between_key_and_recording_leaves_a_key_and_the_next_run_stores_anew(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    """A key stored and its recording not (the run stopped between): the next run stores the
    recording under a key of its own; the first key is left, harmless, for verify to explain."""
    keys = make_bucket(moto_server.endpoint)
    config, identity, _, skey, doc = await archived(sim, tmp_path, bucket, keys)
    bucket.purge(doc["recording"]["key"])
    report = await backfill(config)
    assert report.complete
    again = json.loads(bucket.objects()[skey])
    assert again["recording"]["encryption"]["recipient"] != doc["recording"]["encryption"]["recipient"]
    assert doc["recording"]["encryption"]["key_object"] in keys.objects()  # the stray key
    store = s3_store(bucket.endpoint, bucket.name)
    await Decrypter(key_store(keys), [identity]).check(store, again["recording"])
    audit = await Verifier(store, "archive", keys=KeyChecker(store, key_store(keys))).verify(None)
    # verify explains the stray key (the day's manifest sealed the first ciphertext: the test's doing)
    assert not [p for p in audit.problems if "keys" in p.key or "key" in p.what]
    [stray] = [h for h in audit.history if h.key == doc["recording"]["encryption"]["key_object"]]
    assert "a key whose recording was never stored" in stray.what
    await store.aclose()


async def test_the_keys_store_down_while_the_archive_is_up_stores_no_recording_without_its_key(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A local archive, its keys in a bucket behind a proxy taken down: every recorded call fails
    (retried later) naming the keys store, no recording is stored without its key; with the store
    back, the next run archives them all."""
    keys = make_bucket(moto_server.endpoint)
    proxy = ToggleProxy(int(moto_server.endpoint.rsplit(":", 1)[1])).start()
    identity = age_identity(tmp_path)
    root = tmp_path / "archive"
    section = encryption_section(f"s3://{keys.name}/keys", identity)
    config = config_for(sim, f"file://{root}", tmp_path, storage={**section, "endpoint_url": proxy.endpoint})
    proxy.down()
    try:
        report = await backfill(
            config, store_retry=RetryPolicy(attempts=None, timeout=1.0, wait_initial=0.05, wait_max=0.1)
        )
    finally:
        proxy.up()
    calls = recorded(sim)
    assert {cid for cid, _ in report.failed} == {c.uuid for c in calls}
    assert all(keys.name in why and "did not answer" in why for _, why in report.failed)
    assert all("storage.encryption.keys_url" in why for _, why in report.failed)
    assert not [k for k in local_objects(root) if k.endswith(".age")]
    again = await backfill(config)
    assert again.outcomes[RecordingStatus.ARCHIVED] == len(calls)
    assert len([k for k in local_objects(root) if k.endswith(".age")]) == len(calls)
    proxy.stop()


async def test_a_keys_bucket_that_does_not_exist_stops_the_run_naming_the_setting(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """A configuration error, not a call's failure: StoreAccessError naming storage.encryption.keys_url."""
    identity = age_identity(tmp_path)
    section = encryption_section("s3://no-such-keys-bucket/keys", identity)
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=section)
    with pytest.raises(StoreAccessError, match=r"storage\.encryption\.keys_url"):
        await backfill(config)
    assert not [k for k in bucket.objects() if k.endswith(".age")]
