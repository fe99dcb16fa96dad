"""The commands that look without archiving: ``check``, ``verify``, ``reconcile`` and ``status``.

With several sources each runs per source (``--source NAME`` picks one); the text output gives
each its heading, the JSON output is ``{"sources": {name: report}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio

from archiver.audit.survey import ReconcileReport
from archiver.audit.verify import Auditor, VerifyReport
from archiver.cli.archive import survey
from archiver.cli.common import dates, days, heading, setup
from archiver.cli.output import print_reconcile, print_status, print_verify
from archiver.compose import assemble, make_store, store_identity
from archiver.config.models import Config
from archiver.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArchiverError, ConfigError, FatalError, TransientError
from archiver.state.ledger import Ledger
from archiver.store import Store, put_bytes
from archiver.store.s3 import S3Store


def _emit_json(configs: tuple[Config, ...], documents: list[dict[str, Any]]) -> None:
    if len(configs) == 1:
        print(json.dumps(documents[0], indent=2))
    else:
        print(json.dumps({"sources": {c.name: d for c, d in zip(configs, documents, strict=True)}}, indent=2))


def _title(configs: tuple[Config, ...], config: Config) -> None:
    title = heading(configs, config)
    if title:
        print(title)


# -- check ------------------------------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    configs = setup(args)
    print(f"ok    config {args.config}" + (f" ({len(configs)} sources)" if len(configs) > 1 else ""))
    worst = EXIT_OK
    for config in configs:
        _title(configs, config)
        worst = max(worst, anyio.run(_check_one, config))
    return worst


async def _check_one(config: Config) -> int:
    worst = EXIT_OK
    async with assemble(config) as parts:
        print(f"ok    ledger {config.state.path}")
        try:
            regs = await parts.client.registrations()
            print(f"ok    ccall API {config.source.base_url}: credentials accepted, {len(regs)} registered device(s)")
        except FatalError as exc:
            print(f"FAIL  ccall API: {exc}")
            worst = EXIT_USAGE
        except TransientError as exc:
            print(f"FAIL  ccall API: {exc}")
            worst = max(worst, EXIT_FAILED)
        if isinstance(parts.store, S3Store):
            features = await _check_bucket_features(parts.store, config, parts.control)
            if features != EXIT_OK:
                return features  # every write would be refused; no point probing
        worst = max(worst, await _probe(parts.store, f"{config.control_prefix}/check/{uuid.uuid4()}.txt", "store"))
        if parts.control is not None and parts.control is not parts.store:
            key = f"{config.control_prefix}/check/{uuid.uuid4()}.txt"
            worst = max(worst, await _probe(parts.control, key, "coordination.bucket"))
    return worst


async def _probe(store: Store, key: str, what: str) -> int:
    """Write, read back and delete one small object."""
    data = f"archiver check {datetime.now().isoformat()}\n".encode()
    try:
        await put_bytes(store, key, data, "text/plain")
        read_back = await store.read(key)
        await store.delete(key)
        if read_back != data:
            raise TransientError(f"read back {len(read_back)} bytes that differ from the {len(data)} written")
        print(f"ok    {what} {store.description}: create-only write, read and delete work")
    except FatalError as exc:
        print(f"FAIL  {what}: {exc}")
        return EXIT_USAGE
    except (TransientError, ArchiverError) as exc:
        print(f"FAIL  {what} {store.description}: {exc}")
        return EXIT_FAILED
    return EXIT_OK


async def _check_bucket_features(store: S3Store, config: Config, control: S3Store | None) -> int:
    """Report versioning and Object Lock; FAIL when the config asks for a lock the bucket cannot give."""
    try:
        features = await store.bucket_features()
    except (TransientError, FatalError) as exc:
        print(f"WARN  bucket settings could not be read: {exc}")
        return EXIT_OK
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
        return EXIT_USAGE
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
    if features.get("default_retention") and control is store:
        print(
            "WARN  the bucket's default retention also freezes the leases and claims under _archiver/: every "
            "renewal leaves a locked version; set coordination.bucket to a bucket without Object Lock"
        )
    return EXIT_OK


# -- verify -----------------------------------------------------------------------------------


def verify(args: argparse.Namespace) -> int:
    configs = setup(args, quiet=not args.json and sys.stderr.isatty())
    if not 0 <= args.sample <= 100:
        raise ConfigError([f"At '--sample': a percentage from 0 to 100 (got {args.sample})"], source="the command line")
    seed = random.SystemRandom().randrange(1 << 32)
    reports = []
    for config in configs:
        chosen = days(args, config) if args.since or args.until else None

        async def go(config: Config = config, chosen: Any = chosen) -> VerifyReport:
            store = make_store(config)
            try:
                auditor = Auditor(
                    store, config.storage.prefix, concurrency=config.download.concurrency, rng=random.Random(seed)
                )
                return await auditor.verify(chosen, deep=args.deep, sample_percent=args.sample)
            finally:
                await store.aclose()

        report = anyio.run(go)
        reports.append(report)
        if not args.json:
            _title(configs, config)
            print_verify(report, sys.stdout)
    if args.json:
        _emit_json(configs, [{**r.as_dict(), "sample_seed": seed if args.sample else None} for r in reports])
    return EXIT_OK if not any(r.problems for r in reports) else EXIT_FAILED


# -- reconcile --------------------------------------------------------------------------------


def reconcile(args: argparse.Namespace) -> int:
    configs = setup(args, quiet=not args.json and sys.stderr.isatty())
    ranges = [dates(args, config) for config in configs]
    reports = []
    for config, (since, until) in zip(configs, ranges, strict=True):

        async def go(config: Config = config, since: datetime = since, until: datetime = until) -> ReconcileReport:
            async with assemble(config, ledger=Ledger.in_memory(store_identity="reconcile")) as parts:
                return await survey(parts).reconcile(since, until)

        report = anyio.run(go)
        reports.append(report)
        if not args.json:
            _title(configs, config)
            print_reconcile(report, since, until, sys.stdout)
    if args.json:
        _emit_json(configs, [dataclasses.asdict(r) | {"consistent": r.consistent} for r in reports])
    return EXIT_OK if all(r.consistent for r in reports) else EXIT_FAILED


# -- status -----------------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    configs = setup(args)
    documents = []
    for config in configs:
        path = config.state.path
        if not path.exists():
            print(
                f"archiver: no ledger at {path} (state.path): the archiver has not run with this configuration"
                + (f" for source {config.name}" if config.name else ""),
                file=sys.stderr,
            )
            return EXIT_FAILED
        ledger = Ledger.open(path, store_identity=store_identity(config))
        try:
            documents.append(ledger.status(datetime.now(UTC)))
        finally:
            ledger.close()
    if args.json:
        _emit_json(configs, documents)
    else:
        for config, document in zip(configs, documents, strict=True):
            _title(configs, config)
            print_status(document, sys.stdout)
    return EXIT_OK
