"""``archiver rekey``: every key wrapped again to today's recipients, on moto over HTTP; recordings
never re-written; resumable after a run cut short; recorded in the seal chain; the keys it cannot
open are named, and an identity file that opens none is a configuration error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archiver.archive.seal import Sealer
from archiver.audit.encrypted import KeyChecker
from archiver.audit.plaintext import Decrypter
from archiver.audit.verify import Verifier
from archiver.config.identity import identities
from archiver.config.load import parse_config
from archiver.core import encryption, keyobjects
from archiver.core.encryption import Identity, KeyUnreadable
from archiver.errors import ConfigError, StoreAccessError
from archiver.lifecycle.rekey import Rekeyer, RekeyReport
from archiver.simulator import Simulator
from archiver.store.keys import KeyStore
from archiver.store.seals import read_chain
from tests.helpers import (
    Bucket,
    FakeClock,
    age_identity,
    config_dict,
    encrypted_backfill,
    encryption_section,
    run_cli,
    s3_store,
    write_config,
)
from tests.s3faults import FaultProxy, refused

pytestmark = pytest.mark.anyio
CLOCK = FakeClock(datetime(2026, 11, 20, 9, tzinfo=UTC))


async def archived(sim: Simulator, tmp_path: Path, moto_server: Any, *recipients: Identity) -> tuple[Bucket, Bucket]:
    return await encrypted_backfill(sim, tmp_path, moto_server.endpoint, *recipients)


def rekeyer(
    archive: Bucket, keys: Bucket, opener: list[Identity], to: list[Identity], endpoint: str | None = None
) -> Rekeyer:
    store = s3_store(archive.endpoint, archive.name)
    key_store = KeyStore(s3_store(endpoint or keys.endpoint, keys.name), "keys")
    recipients = tuple(encryption.public(i) for i in to)
    return Rekeyer(key_store, opener, recipients, sealer=Sealer(store, "archive", CLOCK), clock=CLOCK)


async def rekey(archive: Bucket, keys: Bucket, opener: list[Identity], to: list[Identity], **kw: Any) -> RekeyReport:
    job = rekeyer(archive, keys, opener, to)
    return await job.run(await job.days(), **kw)


def key_objects(keys: Bucket) -> dict[str, bytes]:
    return {k: v for k, v in keys.objects().items() if k.endswith(".age")}


async def test_rekey_wraps_every_key_to_the_new_recipients_and_leaves_recordings_alone(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A person leaves: after rekey no key object opens with their identity, every one opens with
    the new recipients', the old wrappings are gone (every version), the recordings were not
    written again, the rotation is in a seal, and verify --decrypt reads everything."""
    leaver, escrow, newcomer = Identity.generate(), Identity.generate(), Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, leaver, escrow)
    recordings = {k: v for k, v in archive.objects().items() if k.endswith(".age")}
    before = key_objects(keys)
    archive_versions = len(archive.versions())

    dry = await rekey(archive, keys, [escrow], [newcomer, escrow], dry_run=True)
    assert (dry.keys, dry.rewrapped, dry.current) == (len(before), len(before), 0)
    assert key_objects(keys) == before

    report = await rekey(archive, keys, [escrow], [newcomer, escrow])
    assert (report.keys, report.rewrapped, report.current, report.problems) == (len(before), len(before), 0, [])
    after = key_objects(keys)
    fingerprint = encryption.recipients_fingerprint([encryption.public(newcomer), encryption.public(escrow)])
    assert {keyobjects.parse(k).recipients for k in after} == {fingerprint}  # type: ignore[union-attr]
    assert not set(after) & set(before)
    assert not [v for v in keys.versions() if v["Key"] in before]  # the old wrappings: every version gone
    for data in after.values():
        assert encryption.unwrap(data, [newcomer])
        with pytest.raises(KeyUnreadable, match="not encrypted to any identity"):
            encryption.unwrap(data, [leaver])
    assert {k: v for k, v in archive.objects().items() if k.endswith(".age")} == recordings
    chain = await read_chain(s3_store(archive.endpoint, archive.name), "archive")
    [rotation] = [r for stated, _ in chain.seals.values() for r in stated.rekeyed]
    assert (rotation.fingerprint, rotation.keys, rotation.rewrapped) == (fingerprint, len(before), len(before))
    assert len(archive.versions()) == archive_versions + 1  # the seal, and nothing else

    store = s3_store(archive.endpoint, archive.name)
    key_store = KeyStore(s3_store(keys.endpoint, keys.name), "keys")
    checker = KeyChecker(store, key_store, fingerprint=fingerprint, decrypter=Decrypter(key_store, [newcomer]))
    audit = await Verifier(store, "archive", clock=CLOCK, keys=checker).verify(None)
    assert audit.problems == []
    assert audit.decrypted == len(recordings)
    assert audit.keys_stale == 0
    assert any("keys wrapped again" in h.what for h in audit.history)

    again = await rekey(archive, keys, [newcomer], [newcomer, escrow])
    assert (again.rewrapped, again.current, again.seal_key) == (0, len(before), None)  # recorded already: no new seal


async def test_a_rekey_cut_short_is_finished_by_the_next_and_recorded_once(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A run stopped part-way (here the keys store refusing writes on the second day) records
    nothing; the next run re-wraps only what is left, removes an old wrapping left beside a
    re-wrapped key, and records the rotation."""
    old, new = Identity.generate(), Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, old)
    total = len(key_objects(keys))
    second_day = sorted({k.split("/")[1:4][2] for k in key_objects(keys)})[1]
    with FaultProxy(
        moto_server.endpoint, refused("PutObject", 403, "AccessDenied", key_prefix=f"keys/2026/11/{second_day}")
    ) as proxy:
        job = rekeyer(archive, keys, [old, new], [new], endpoint=proxy.endpoint)
        with pytest.raises(StoreAccessError):
            await job.run(await job.days())
    done_first = [k for k in key_objects(keys) if f"/11/{second_day}/" not in k]
    assert done_first  # the first day went
    first_new = next(k for k in done_first)
    stem, tag, _ = keyobjects.parse(first_new)  # type: ignore[misc]
    stale = keyobjects.key_object_key(stem, tag, "0" * 12)  # an old wrapping left beside it, as a crash leaves
    keys.client.put_object(Bucket=keys.name, Key=stale, Body=b"age-encryption.org/v1\n")

    report = await rekey(archive, keys, [old, new], [new])
    assert report.problems == []
    assert (report.current, report.rewrapped, report.keys) == (len(done_first), total - len(done_first), total)
    assert report.leftovers == 1
    assert stale not in keys.objects()
    chain = await read_chain(s3_store(archive.endpoint, archive.name), "archive")
    assert len([r for stated, _ in chain.seals.values() for r in stated.rekeyed]) == 1


async def test_a_key_that_does_not_open_is_named_and_nothing_is_recorded(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """A damaged key object is named; every other key is re-wrapped; no rotation is recorded until
    a run opens them all."""
    old, new = Identity.generate(), Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, old)
    damaged = sorted(key_objects(keys))[0]
    keys.client.put_object(Bucket=keys.name, Key=damaged, Body=b"not an age file")
    report = await rekey(archive, keys, [old], [new])
    assert len(report.problems) == 1
    assert damaged in report.problems[0]
    assert "not an age file" in report.problems[0]
    assert report.rewrapped == len(key_objects(keys)) - 1
    assert report.seal_key is None
    assert damaged in keys.objects()  # never removed: it was not re-wrapped


async def test_rekey_on_the_command_line_with_an_identity_that_opens_nothing_exits_2(
    sim: Simulator, tmp_path: Path, moto_server: Any
) -> None:
    """The identity file is not a recipient's: exit 2 naming storage.encryption.identity_file;
    with the right one, exit 0 and the counts; without encryption configured, exit 2 naming it."""
    old = age_identity(tmp_path, "old-identity")
    stranger = age_identity(tmp_path, "stranger-identity")
    new = Identity.generate()
    archive, keys = await archived(sim, tmp_path, moto_server, old)
    raw = config_dict(
        api="https://api.ccall.vn",
        storage={"url": archive.url, "endpoint_url": archive.endpoint},
        state=tmp_path / "ledger.sqlite3",
    )
    raw["storage"] |= encryption_section(f"s3://{keys.name}/keys", new, identity_file=tmp_path / "stranger-identity")
    config = write_config(tmp_path / "config.yaml", raw)
    refused_run = run_cli("rekey", "-c", str(config))
    assert refused_run.returncode == 2, refused_run.stderr
    assert "storage.encryption.identity_file" in refused_run.stderr
    assert "opens none of the" in refused_run.stderr
    assert stranger  # a real identity: only not a recipient's

    raw["storage"]["encryption"]["identity_file"] = str(tmp_path / "old-identity")
    write_config(config, raw)
    done = run_cli("rekey", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert f"{len(key_objects(keys))} key(s) of recordings: {len(key_objects(keys))} wrapped again" in done.stdout
    assert "recorded in the seal chain" in done.stdout

    del raw["storage"]["encryption"]
    write_config(config, raw)
    bare = run_cli("rekey", "-c", str(config))
    assert bare.returncode == 2
    assert "storage.encryption" in bare.stderr


async def test_a_missing_identity_file_is_a_configuration_error(tmp_path: Path) -> None:
    """ConfigError naming the setting and the file, before any request."""
    raw = config_dict(api="https://api.ccall.vn", storage="s3://call-recordings/ccall", state=tmp_path / "l.sqlite3")
    raw["storage"] |= encryption_section("s3://call-keys/k", Identity.generate(), identity_file=tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"storage\.encryption\.identity_file.*cannot read .*nope"):
        identities(parse_config(raw, environ={}), why="to test")
