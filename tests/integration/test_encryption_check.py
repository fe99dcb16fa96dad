"""``archiver check`` with storage.encryption, as an operator runs it: the recipients, the keys
bucket (no default retention; a key written, read and deleted), the identity file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archiver.core.encryption import Identity
from archiver.simulator import Simulator
from tests.helpers import (
    Bucket,
    age_identity,
    config_dict,
    encryption_section,
    make_bucket,
    retain_by_default,
    run_cli,
    write_config,
)


def checked(
    tmp_path: Path, sim: Simulator, bucket: Bucket, keys_url: str, *recipients: Identity, **settings: Any
) -> Any:
    raw = config_dict(
        api=sim, storage={"url": bucket.url, "endpoint_url": bucket.endpoint}, state=tmp_path / "l.sqlite3"
    )
    raw["storage"] |= encryption_section(keys_url, *recipients, **settings)
    return run_cli("check", "-c", str(write_config(tmp_path / "config.yaml", raw)))


def test_check_passes_a_good_keys_bucket_and_identity_and_leaves_nothing(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    keys = make_bucket(moto_server.endpoint)
    identity = age_identity(tmp_path)
    done = checked(tmp_path, sim, bucket, f"s3://{keys.name}/k", identity, identity_file=tmp_path / "age-identity")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "ok    storage.encryption: recordings are encrypted (age) to their own keys, wrapped to 1 recipient"
        in done.stdout
    )
    assert "ok    storage.encryption.keys_url: versioned, no default retention" in done.stdout
    assert "a key can be written create-only, read and deleted" in done.stdout
    assert "ok    storage.encryption.identity_file: 1 identity(ies), one of them a recipient's" in done.stdout
    assert keys.objects() == {}
    assert not keys.versions()
    assert str(identity) not in done.stdout + done.stderr


def test_a_keys_bucket_with_default_retention_fails_check_naming_the_setting(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    keys = make_bucket(moto_server.endpoint, object_lock=True)
    retain_by_default(keys, "COMPLIANCE", 1)
    done = checked(tmp_path, sim, bucket, f"s3://{keys.name}/k", Identity.generate())
    assert done.returncode == 2, done.stdout
    assert (
        "FAIL  storage.encryption.keys_url: the keys bucket has a default retention (COMPLIANCE 1 days)" in done.stdout
    )
    assert keys.objects() == {}


def test_a_keys_bucket_that_does_not_exist_fails_check_naming_the_setting(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    done = checked(tmp_path, sim, bucket, "s3://no-such-keys-bucket/k", Identity.generate())
    assert done.returncode == 2, done.stdout
    assert "storage.encryption.keys_url" in done.stdout
    assert "does not exist" in done.stdout


def test_an_unversioned_keys_bucket_and_a_loose_or_foreign_identity_are_warned_of(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    """Warnings (exit 0): versioning off; an identity file others may read; one that is no
    recipient's, so cannot read what is written from now on."""
    keys = make_bucket(moto_server.endpoint, versioned=False)
    mine, stranger = age_identity(tmp_path), age_identity(tmp_path, "stranger")
    (tmp_path / "stranger").chmod(0o644)
    done = checked(tmp_path, sim, bucket, f"s3://{keys.name}/k", mine, identity_file=tmp_path / "stranger")
    assert done.returncode == 0, done.stdout
    assert "WARN  storage.encryption.keys_url: versioning is off" in done.stdout
    assert "is readable by others than its owner (mode 0644): chmod 600 it" in done.stdout
    assert "none of its 1 identity(ies) is one of storage.encryption.age_recipients" in done.stdout
    assert str(stranger) not in done.stdout


def test_an_unreadable_identity_file_or_a_bad_recipient_fails_with_exit_2(
    sim: Simulator, tmp_path: Path, bucket: Bucket, moto_server: Any
) -> None:
    keys = make_bucket(moto_server.endpoint)
    gone = checked(tmp_path, sim, bucket, f"s3://{keys.name}/k", Identity.generate(), identity_file=tmp_path / "nope")
    assert gone.returncode == 2
    assert "FAIL  At 'storage.encryption.identity_file': cannot read" in gone.stdout
    (tmp_path / "not-an-identity").write_text("hello\n")
    junk = checked(
        tmp_path, sim, bucket, f"s3://{keys.name}/k", Identity.generate(), identity_file=tmp_path / "not-an-identity"
    )
    assert junk.returncode == 2
    assert "line 1 is not an age X25519 identity" in junk.stdout
    raw = config_dict(api=sim, storage=bucket.url, state=tmp_path / "l.sqlite3")
    raw["storage"]["encryption"] = {"age_recipients": ["age1nope"], "keys_url": f"s3://{keys.name}/k"}
    bad = run_cli("check", "-c", str(write_config(tmp_path / "bad.yaml", raw)))
    assert bad.returncode == 2
    assert "At 'storage.encryption.age_recipients': item 1: 'age1nope' is not an age X25519 recipient" in bad.stderr
    assert "Traceback" not in bad.stderr
