"""``archiver check``: the configuration, the API's credentials and the bucket, before any work.

Prints one ``ok``/``WARN``/``FAIL`` line per thing checked and exits with the worst: 0 when
everything is usable, 1 when something did not answer, 2 when a person must change something.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import anyio

from archiver.audit.sample import host, peek_recording, recent_rows
from archiver.cli.check_keys import check_encryption
from archiver.cli.common import print_title, setup
from archiver.compose import Parts, assemble
from archiver.config.models import Config
from archiver.core import lifecycle
from archiver.core.clock import Clock, SystemClock
from archiver.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ArchiverError,
    FatalError,
    StoreAccessError,
    TransientError,
)
from archiver.service.preflight import ensure_create_only
from archiver.source.fetch import LinkPolicy
from archiver.state.ledger import Ledger
from archiver.store import ControlStore, Store, put_bytes
from archiver.store.probe import discard, refuses_second_create
from archiver.store.s3 import S3Store
from archiver.store.seals import ChainReader


def check(args: argparse.Namespace, clock: Clock | None = None) -> int:
    """Check every source of the file; *clock* (default: the system's) says what "recent" is."""
    configs = setup(args)
    print(f"ok    config {args.config}" + (f" ({len(configs)} sources)" if len(configs) > 1 else ""))
    worst = EXIT_OK
    for config in configs:
        print_title(configs, config)
        worst = max(worst, anyio.run(_check_one, config, clock or SystemClock()))
    return worst


async def _check_one(config: Config, clock: Clock) -> int:
    worst = EXIT_OK
    # The ledger is only looked at: check runs in a root shell, and a ledger it created would
    # belong to root, not to the service's dynamic user.
    print(_ledger_line(config.state.path))
    # The configuration's zone as it is: check reports the seals' (a disagreement is a FAIL line
    # among the others, not the end of check).
    async with assemble(config, ledger=Ledger.in_memory(store_identity="check"), zone_from_seals=False) as parts:
        try:
            regs = await parts.client.registrations()
            print(f"ok    ccall API {config.source.base_url}: credentials accepted, {len(regs)} registered device(s)")
        except FatalError as exc:
            print(f"FAIL  ccall API: {exc}")
            worst = EXIT_USAGE
        except TransientError as exc:
            print(f"FAIL  ccall API: {exc}")
            worst = max(worst, EXIT_FAILED)
        if worst == EXIT_OK:
            worst = max(worst, await _sample(parts, config, clock.now().astimezone(config.source.tz)))
        print(_retention_line(config))
        worst = max(worst, await _check_zone(parts.store, config))
        if isinstance(parts.store, S3Store):
            features, verdict = await _check_bucket_features(parts.store, config, parts.control)
            if verdict != EXIT_OK:
                return verdict  # every write would be refused; no point probing
            await _check_lifecycle(parts.store, config, features)
            worst = max(worst, await _check_storage_class(parts.store, config))
            await _check_checksums(parts.store, f"{config.control_prefix}/check/{uuid.uuid4()}.txt")
        elif config.storage.storage_class != "STANDARD":
            print(f"WARN  storage.storage_class {config.storage.storage_class} means nothing to a local folder")
        worst = max(worst, await _probe(parts.store, f"{config.control_prefix}/check/{uuid.uuid4()}.txt", "store"))
        worst = max(worst, await _check_create_only(parts))
        if isinstance(parts.store, S3Store) and config.storage.create_only == "enforced":
            await _check_multipart_create_only(parts.store, f"{config.control_prefix}/check/{uuid.uuid4()}.txt")
        if parts.control is not None and config.coordination.bucket is not None:
            key = f"{config.control_prefix}/check/{uuid.uuid4()}.json"
            worst = max(worst, await _probe_control(parts.control, key))
        if parts.keys is not None:
            worst = max(worst, await check_encryption(config, parts.keys))
    return worst


async def _sample(parts: Parts, config: Config, now: datetime) -> int:
    """Recent rows as the archiver reads them, whether their links may be fetched, and the first
    bytes of one recording: a changed format or a wrong allow-list shows here, not in the archive."""
    policy = LinkPolicy(config.source.recording_hosts)
    try:
        rows = await recent_rows(parts.client, policy, tz=config.source.tz, now=now)
    except (TransientError, FatalError) as exc:
        print(f"FAIL  recent calls could not be read: {exc}")
        return EXIT_FAILED
    if not rows:
        print("WARN  no call in the last 3 days to show as parsed")
        return EXIT_OK
    worst = EXIT_OK
    for row in rows:
        cdr = row.cdr
        when = cdr.start_local.strftime("%Y-%m-%d %H:%M") if cdr.start_local else "?"
        talk = f"{cdr.duration_seconds or 0:g} s"
        seen = f"{when} {cdr.direction or '?'} {cdr.hangup_cause or '?'} {talk}: call {cdr.call_id}"
        if cdr.suspicious:
            fields = ", ".join(sorted(str(k) for k in cdr.raw)) if isinstance(cdr.raw, dict) else "?"
            print(f"FAIL  row {seen}: {cdr.suspicious}; its fields: {fields}")
            worst = max(worst, EXIT_FAILED)
        elif row.link_refusal:
            print(
                f"FAIL  row {seen}: recording on {host(cdr.recording_url)}, which would be refused: {row.link_refusal}"
            )
            worst = max(worst, EXIT_USAGE)
        elif cdr.recording_url:
            print(f"ok    row {seen}: recording on {host(cdr.recording_url)}")
        else:
            print(f"ok    row {seen}: no recording")
    peek = await peek_recording(parts.fetcher, rows)
    if peek is None:
        print("WARN  none of these calls has a recording to fetch")
    elif peek.format:
        print(f"ok    recording {host(peek.url)}: the first bytes are {peek.format.upper()} audio")
    else:
        print(f"FAIL  recording {host(peek.url)}: {peek.problem}")
        worst = max(worst, EXIT_FAILED)
    return worst


async def _check_create_only(parts: Parts) -> int:
    """The store refuses a second create-only write (and a stale ETag for control objects)."""
    try:
        await ensure_create_only(parts, let_through_unanswered=False)
    except StoreAccessError as exc:
        print(f"FAIL  create-only: {exc}")
        return EXIT_USAGE
    except TransientError as exc:  # what the store said (an error status), or that it did not answer
        print(f"FAIL  create-only could not be proved now: {exc}; run check again")
        return EXIT_FAILED
    if parts.config.storage.create_only == "look_before_write":
        print(
            "WARN  create-only: storage.create_only is look_before_write: each write looks first; two writers "
            "racing for one key can both write (see config.example.yaml)"
        )
    else:
        print("ok    create-only: the store refuses a second write of a key (and a stale ETag for control objects)")
    return EXIT_OK


async def _check_multipart_create_only(store: S3Store, key: str) -> None:
    """Whether the store refuses a create-only completion of a multipart upload (recordings of
    64 MiB and more): a WARN where it does not, as the archiver then looks before completing."""
    try:
        in_parts = S3Store(store.s3, multipart_threshold=1, look_before_completing=False)  # the store's own condition
        refused = await refuses_second_create(in_parts, key)
    except ArchiverError as exc:
        print(f"WARN  create-only for large recordings could not be probed: {exc}")
        return
    if refused:
        print(
            "ok    create-only: the store refuses a second multipart upload of a key too "
            "(recordings of 64 MiB and more)"
        )
    else:
        print(
            "WARN  create-only: the store ignores If-None-Match on completing a multipart upload (recordings of 64 MiB "
            "and more): the archiver looks for the key just before completing; two writers racing within that gap "
            "could both write"
        )


def _retention_line(config: Config) -> str:
    keep = config.retention.keep
    if keep is None:
        return "ok    retention: keep everything (retention.keep is null; `archiver expire` removes nothing)"
    lock = config.storage.object_lock
    if lock is not None and timedelta(days=lock.retain_days) > keep:
        return (
            f"WARN  retention.keep ({config.retention.policy}) is shorter than storage.object_lock.retain_days "
            f"({lock.retain_days}): `archiver expire` must leave each expired day's objects until their retention ends"
        )
    return f"ok    retention: keep {config.retention.policy}; `archiver expire` removes each day older than that"


async def _check_lifecycle(store: S3Store, config: Config, features: dict[str, str | None]) -> None:
    """WARN about lifecycle rules that would move or delete records, day files or seals, or delete
    recordings before retention.keep; and about a default retention (in *features*) longer than keep."""
    try:
        rules = await store.s3.lifecycle_rules()
    except (TransientError, FatalError) as exc:
        print(f"WARN  bucket lifecycle rules could not be read: {exc}")
        return
    if rules is None:
        print("ok    bucket lifecycle: the store has no lifecycle rules to read")
        return
    found = lifecycle.warnings(rules, config.storage.prefix, config.retention.keep)
    for line in found:
        print(f"WARN  {line}")
    if not found:
        print(f"ok    bucket lifecycle: {len(rules)} rule(s); none moves or deletes the archive's objects")
    default = lifecycle.retention_days(features.get("default_retention"))
    keep = config.retention.keep
    if default is not None and keep is not None and timedelta(days=default) > keep:
        print(
            f"WARN  the bucket's default retention ({features['default_retention']}) outlasts retention.keep "
            f"({config.retention.policy}): `archiver expire` must leave objects until their retention ends"
        )


async def _check_storage_class(store: S3Store, config: Config) -> int:
    """Recordings go to storage.storage_class: a write in that class, read back by HEAD."""
    wanted = config.storage.storage_class
    tail = " (records, day files and seals stay STANDARD)"
    if wanted == "STANDARD":
        print("ok    storage class of recordings: STANDARD" + tail)
        return EXIT_OK
    key = f"{config.control_prefix}/check/{uuid.uuid4()}.bin"
    data = b"archiver check: storage class\n"
    try:
        await store.put(
            key,
            io.BytesIO(data),
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            content_type="application/octet-stream",
            storage_class=wanted,
        )
        info = await store.head(key)
        await discard(store, key)
    except FatalError as exc:
        print(f"FAIL  storage.storage_class {wanted}: the store refused a write in it: {exc}")
        return EXIT_USAGE
    except (TransientError, ArchiverError) as exc:
        print(f"FAIL  storage.storage_class {wanted}: could not be probed: {exc}")
        return EXIT_FAILED
    got = (info.storage_class if info else None) or "STANDARD"
    cold = " (an archive tier: `archiver restore` before a recording can be played, exported or re-hashed)"
    if got != wanted:
        print(f"WARN  storage class of recordings: {wanted} was asked for, the store keeps {got}" + tail)
    else:
        print(f"ok    storage class of recordings: {wanted}" + tail + (cold if info and info.in_archive_tier else ""))
    return EXIT_OK


_CHECKSUMS = {
    "refused": "ok    checksums: the store computes each object's SHA-256 from the bytes it receives and refuses a "
    "body that disagrees with its ChecksumSHA256: verify compares recordings with it without reading them",
    "kept unchecked": "WARN  checksums: the store keeps the ChecksumSHA256 it is sent without checking it against "
    "the bytes: it is only the writer's word, so verify reads and hashes every recording, and one in cold storage "
    "cannot be verified",
    "none": "ok    checksums: the store keeps no SHA-256 of its own: verify reads every recording back to hash it",
}


async def _check_checksums(store: S3Store, key: str) -> None:
    """Whether the store's ChecksumSHA256 is its own (computed from the bytes) or the writer's word."""
    try:
        print(_CHECKSUMS[await store.checksum_kept(key)])
    except ArchiverError as exc:
        print(f"WARN  checksums: whether the store checks ChecksumSHA256 could not be probed: {exc}")


async def _check_zone(store: Store, config: Config) -> int:
    """The zone the archive's days are filed in, as its last seal states it, against the
    configuration's: another one named is a FAIL, as every command that writes refuses it."""
    reader = ChainReader(store, config.storage.prefix)
    try:
        await reader.read_head()
    except ArchiverError as exc:
        print(f"WARN  time zone: the seal chain could not be read: {exc}")
        return EXIT_OK
    stated, named = reader.chain.timezone, config.source.timezone
    if stated is not None and named is not None and stated != named:
        print(
            f"FAIL  time zone: source.timezone says {named}, the archive's seals say its days are filed in {stated}: "
            f"run, backfill, rearchive, erase and expire refuse to start; set source.timezone: {stated}, or leave "
            "it out (the seals' zone is then used)"
        )
        return EXIT_USAGE
    if stated is not None:
        print(
            f"ok    time zone: the archive's days are filed in {stated}, as its seals say"
            + ("" if named else " (source.timezone names none: the seals' zone is used)")
        )
    elif named is None:
        print(
            "WARN  time zone: no seal states the zone the archive's days are filed in yet, and source.timezone is "
            f"not set: days are filed in {config.source.tz.key}; set it before `archiver expire` runs"
        )
    else:
        print(f"ok    time zone: days are filed in {named} (source.timezone)")
    return EXIT_OK


def _ledger_line(path: Path) -> str:
    """What check says of ``state.path``, without opening it."""
    if path.exists():
        return f"ok    ledger {path}"
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        return f"WARN  ledger {path}: not there yet, and {parent} is not writable by this user"
    return f"ok    ledger {path}: not there yet; the first run creates it"


async def _probe(store: Store, key: str, what: str) -> int:
    """Write, read back and delete one small object."""
    data = f"archiver check {datetime.now().isoformat()}\n".encode()

    async def probe() -> bytes:
        await put_bytes(store, key, data, "text/plain")
        read_back = await store.read(key)
        await store.delete(key)
        return read_back

    return await _verdict(what, store.description, "create-only write, read and delete work", data, probe)


async def _probe_control(store: ControlStore, key: str) -> int:
    """Write one control object create-only, read it back and delete it."""
    data = f'{{"check": "{datetime.now().isoformat()}"}}'.encode()

    async def probe() -> bytes:
        await store.put_conditional(key, data, if_match=None)
        found = await store.read_with_etag(key)
        await store.delete(key)
        return found[0] if found else b""

    return await _verdict(
        "coordination.bucket", store.description, "conditional write, read and delete work", data, probe
    )


async def _verdict(what: str, where: str, works: str, written: bytes, probe: Callable[[], Awaitable[bytes]]) -> int:
    """Run *probe* (which returns what it read back of *written*) and print its line; the exit code."""
    try:
        read_back = await probe()
        if read_back != written:
            raise TransientError(f"read back {len(read_back)} bytes that differ from the {len(written)} written")
        print(f"ok    {what} {where}: {works}")
    except FatalError as exc:
        print(f"FAIL  {what}: {exc}")
        return EXIT_USAGE
    except (TransientError, ArchiverError) as exc:
        print(f"FAIL  {what} {where}: {exc}")
        return EXIT_FAILED
    return EXIT_OK


async def _check_bucket_features(
    store: S3Store, config: Config, control: ControlStore | None
) -> tuple[dict[str, str | None], int]:
    """Report versioning and Object Lock; FAIL when the config asks for a lock the bucket cannot give.
    The settings read (none when they could not be), and the exit code."""
    try:
        features = await store.bucket_features()
    except (TransientError, FatalError) as exc:
        print(f"WARN  bucket settings could not be read: {exc}")
        return {}, EXIT_OK
    versioning = features["versioning"] or "off"
    lock = features["object_lock"] or "off"
    print(
        f"{'ok  ' if versioning == 'Enabled' else 'WARN'}  bucket versioning: {versioning}"
        + ("" if versioning == "Enabled" else " (turn it on: an overwrite or delete would then keep the old version)")
    )
    wants_lock = config.storage.object_lock is not None or config.storage.legal_hold
    if wants_lock and lock != "Enabled":
        print(
            "FAIL  storage.object_lock/legal_hold is set but the bucket has no Object Lock: every write would be "
            "refused (Object Lock can only be turned on when the bucket is created)"
        )
        return features, EXIT_USAGE
    print(
        f"ok    bucket Object Lock: {lock}"
        + (
            f", objects get {config.storage.object_lock.mode} retention for "
            f"{config.storage.object_lock.retain_days} days"
            if config.storage.object_lock
            else ""
        )
        + (f"; default retention {features['default_retention']}" if features.get("default_retention") else "")
    )
    if features.get("default_retention") and control is not None and config.coordination.bucket is None:
        print(
            "WARN  the bucket's default retention also freezes the leases and claims under _archiver/: every "
            "renewal leaves a locked version; set coordination.bucket to a bucket without Object Lock"
        )
    return features, EXIT_OK
