"""Encryption at rest attacked, on moto over HTTP: what a person with write access to the keys
bucket (or the archive bucket), a killed process or an unlucky operator could make the archiver
destroy, or say falsely. Each test is one finding of the review of issue 32."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archiver.archive.seal import Sealer
from archiver.audit.encrypted import KeyChecker
from archiver.audit.plaintext import Decrypter
from archiver.audit.verify import Verifier
from archiver.core import encryption, keyobjects
from archiver.core.encryption import Identity
from archiver.lifecycle.erase import Eraser, EraseRefused
from archiver.lifecycle.rekey import Rekeyer, RekeyReport
from archiver.simulator import Simulator
from archiver.store.keys import KeyStore
from tests.helpers import TZ, Bucket, FakeClock, encrypted_backfill, expirer_of, s3_store

pytestmark = pytest.mark.anyio
CLOCK = FakeClock(datetime(2026, 11, 20, 9, tzinfo=UTC))


async def archived(sim: Simulator, tmp_path: Path, moto_server: Any, *recipients: Identity) -> tuple[Bucket, Bucket]:
    return await encrypted_backfill(sim, tmp_path, moto_server.endpoint, *recipients)


def key_store(keys: Bucket) -> KeyStore:
    return KeyStore(s3_store(keys.endpoint, keys.name), "keys")


async def rekey(archive: Bucket, keys: Bucket, opener: list[Identity], to: list[Identity]) -> RekeyReport:
    recipients = tuple(encryption.public(i) for i in to)
    sealer = Sealer(s3_store(archive.endpoint, archive.name), "archive", CLOCK)
    job = Rekeyer(key_store(keys), opener, recipients, sealer=sealer, clock=CLOCK)
    return await job.run(await job.days())


async def decrypt_audit(archive: Bucket, keys: Bucket, identity: Identity) -> list[str]:
    """verify --decrypt's problems, as text."""
    store = s3_store(archive.endpoint, archive.name)
    checker = KeyChecker(store, key_store(keys), decrypter=Decrypter(key_store(keys), [identity]))
    report = await Verifier(store, "archive", clock=CLOCK, keys=checker).verify(None)
    return [f"{p.key}: {p.what}" for p in report.problems]


def key_objects(keys: Bucket) -> dict[str, bytes]:
    return {k: v for k, v in keys.objects().items() if k.endswith(".age")}


def two_keys(keys: Bucket) -> tuple[str, str]:
    """Two recordings' key objects."""
    first, second, *_ = sorted(key_objects(keys))
    return first, second


async def test_rekey_never_destroys_a_key_for_a_wrapping_that_holds_another_recordings_key(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """Someone with write access to the keys bucket puts another recording's key object beside a
    recording's own (as an earlier recipient set's wrapping). rekey opened the first that opened,
    wrapped it again and removed every version of the others: the recording's own key was
    destroyed for ever, for a copy of another's. A wrapping that does not hold the key its name
    states is named as a problem, and nothing of the recording's is removed."""
    old, new = Identity.generate(), Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, old)
    victim, other = two_keys(keys)
    stem, tag, _ = keyobjects.parse(victim)  # type: ignore[misc]
    planted = keyobjects.key_object_key(stem, tag, "0" * 12)  # sorts before the real one
    keys.client.put_object(Bucket=keys.name, Key=planted, Body=key_objects(keys)[other])

    report = await rekey(archive, keys, [old, new], [new])

    assert any(planted in p and "another recording's key" in p for p in report.problems), report.problems
    assert report.seal_key is None
    assert not [p for p in await decrypt_audit(archive, keys, new) if stem.rsplit("/", 1)[-1] in p]


async def test_rekey_removes_an_old_wrapping_beside_a_current_one_only_once_the_current_one_is_proved(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """An object under today's recipient set's name beside a recording's key (a planted one, or
    another recording's key) made rekey count the key done and remove every version of the old
    wrapping, unopened: the recording's key was gone for ever. The old wrapping is removed only
    when today's opens to the recording's key; otherwise both stay and the key is named."""
    old, new = Identity.generate(), Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, old)
    victim, other = two_keys(keys)
    stem, tag, _ = keyobjects.parse(victim)  # type: ignore[misc]
    fingerprint = encryption.recipients_fingerprint([encryption.public(new)])
    planted = keyobjects.key_object_key(stem, tag, fingerprint)
    forged, _ = encryption.rewrap(key_objects(keys)[other], [old], [encryption.public(new)])
    keys.client.put_object(Bucket=keys.name, Key=planted, Body=forged)

    report = await rekey(archive, keys, [old, new], [new])

    assert victim in keys.objects(), "the recording's only real key was destroyed"
    assert any(planted in p for p in report.problems), report.problems
    assert report.seal_key is None


def recorded_call(archive: Bucket) -> dict[str, Any]:
    """The record of one archived call."""
    return next(
        doc
        for key, raw in sorted(archive.objects("archive/2026/11/01/").items())
        if key.endswith(".json")
        and "manifest" not in key
        and (doc := json.loads(raw)).get("recording", {}).get("status") == "archived"
    )


async def test_an_erase_that_finds_no_key_of_an_encrypted_recording_writes_nothing(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """Someone copies a call's key object and removes it (and its label), meaning to put the copy
    back once the call is recorded erased (or keys_url names the wrong bucket): the erase finds no
    key to destroy, so it refuses, naming the keys store, and writes nothing; an erasure that
    destroyed no key is never recorded."""
    identity = Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, identity)
    record = recorded_call(archive)
    key_object = record["recording"]["encryption"]["key_object"]
    for key in [k for k in keys.objects() if k.startswith(key_object.rsplit(".", 2)[0])]:
        keys.purge(key)  # the key object and its label, every version
    before = archive.objects()
    eraser = Eraser(s3_store(archive.endpoint, archive.name), "archive", tz=TZ, clock=CLOCK, keys=key_store(keys))
    with pytest.raises(EraseRefused, match=r"no key of .*storage\.encryption\.keys_url.*nothing was written"):
        await eraser.erase(record["call_id"], "DSR-9", bypass_governance=False, dry_run=False)
    assert archive.objects() == before


async def test_expire_destroys_no_key_of_a_day_the_archive_has_not_recorded_expired(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """expire destroyed the keys of every day past retention that it did not find in the archive
    (to finish an expire cut short), without asking whether the archive had recorded that day
    expired: pointed at the wrong archive (a prefix mistyped, a bucket moved), it destroyed the keys
    of recordings still in the real one, a legal hold's among them, and recorded nothing. Only
    the keys of days the seal chain records expired are destroyed that way."""
    identity = Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, identity)
    before = set(keys.objects())
    await expirer_of(s3_store(archive.endpoint, archive.name), key_store(keys), prefix="archive-mistyped").run()

    assert set(keys.objects()) == before
    assert not await decrypt_audit(archive, keys, identity)


async def test_a_key_version_left_behind_a_delete_marker_after_crypto_shredding_is_found(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """An erase recorded, its keys not yet destroyed (a process killed between the two), and then
    a plain DELETE of the key object (a delete marker: the version stays, and GetObjectVersion
    reads it). verify listed only current objects, found none, and called the key gone: nobody ran
    the erase again, and the recording stayed readable. Every version of a shredded recording's
    key is looked for."""
    identity = Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, identity)
    record = recorded_call(archive)
    key_object = record["recording"]["encryption"]["key_object"]
    saved = {k: v for k, v in keys.objects().items() if k.startswith(key_object.rsplit(".", 2)[0])}
    eraser = Eraser(s3_store(archive.endpoint, archive.name), "archive", tz=TZ, clock=CLOCK, keys=key_store(keys))
    await eraser.erase(record["call_id"], "DSR-10", bypass_governance=False, dry_run=False)
    for key, data in saved.items():  # as the erase left them, killed before destroying them
        keys.client.put_object(Bucket=keys.name, Key=key, Body=data)
        keys.client.delete_object(Bucket=keys.name, Key=key)  # hidden, not gone

    problems = await decrypt_audit(archive, keys, identity)

    assert any(key_object in p and "crypto-shredded, but its key is still in" in p for p in problems), problems
    again = await eraser.erase(record["call_id"], "DSR-10", bypass_governance=False, dry_run=False)
    assert again.key_versions_removed >= 2
    assert not [v for v in keys.versions() if v["Key"] in saved]
