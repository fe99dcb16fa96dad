"""The commands that look without archiving: ``verify``, ``reconcile`` and ``status``.

With several sources each runs per source (``--source NAME`` picks one); the text output gives
each its heading, the JSON output is ``{"sources": {name: report}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from archiver.audit.encrypted import KeyChecker
from archiver.audit.plaintext import Decrypter
from archiver.audit.reconcile import ReconcileReport
from archiver.audit.reconcile import reconcile as reconcile_calls
from archiver.audit.verify import Verifier, VerifyReport
from archiver.cli.common import dates, days, emit_json, in_archive_zones, print_title, setup
from archiver.cli.output import print_reconcile, print_status, print_verify
from archiver.compose import assemble
from archiver.compose.stores import make_key_store, make_store, store_identity
from archiver.config.identity import identities
from archiver.config.models import Config
from archiver.core.encryption import Identity
from archiver.core.encryption import recipients_fingerprint as encryption_fingerprint
from archiver.core.windows import nightly_days
from archiver.errors import EXIT_FAILED, EXIT_OK, ConfigError
from archiver.state.ledger import Ledger
from archiver.store import Store
from archiver.store.keys import KeyStore
from archiver.store.listing import archive_days, day_of_folder
from archiver.store.seals import read_chain

log = structlog.get_logger("archiver.cli")


# -- verify -----------------------------------------------------------------------------------


def verify(args: argparse.Namespace) -> int:
    configs = setup(args, quiet=not args.json and sys.stderr.isatty(), read_only=True)
    if not 0 <= args.sample <= 100:
        raise ConfigError([f"At '--sample': a percentage from 0 to 100 (got {args.sample})"], source="the command line")
    seed = random.SystemRandom().randrange(1 << 32)
    reports = []
    nightly = args.recent is not None
    if nightly and (args.since or args.until or args.recent < 1 or args.older < 0):
        raise ConfigError(
            ["At '--recent/--older': --recent takes a number of days from 1, --older from 0, without --since/--until"],
            source="the command line",
        )
    for config in configs:
        chosen = days(args, config) if args.since or args.until else None

        identities = verify_identities(config) if args.decrypt else None

        async def go(config: Config = config, chosen: Any = chosen, identities: Any = identities) -> VerifyReport:
            store = make_store(config)
            keys = make_key_store(config)
            checker = key_checker(config, store, keys, identities)
            try:
                keep, policy = config.retention.keep, config.retention.policy
                verifier = Verifier(
                    store,
                    config.storage.prefix,
                    concurrency=config.download.concurrency,
                    rng=random.Random(seed),
                    retention=(keep, policy, config.source.tz) if keep is not None and policy is not None else None,
                    checksum_probe=f"{config.control_prefix}/check/{uuid.uuid4()}.txt",
                    keys=checker,
                )
                if nightly:
                    done = await _nightly(
                        config, store, verifier, recent=args.recent, older=args.older, seals=tuple(args.recorded_seal)
                    )
                else:
                    done = await verifier.verify(
                        chosen, deep=args.deep, sample_percent=args.sample, recorded_seals=tuple(args.recorded_seal)
                    )
                if checker is not None and checker.not_ours and not checker.opened:
                    raise ConfigError(
                        [
                            f"At 'storage.encryption.identity_file': it opens none of the {checker.not_ours} key(s) "
                            "tried: give the identity of one of the recipients the keys are wrapped to"
                        ]
                    )
                return done
            finally:
                await store.aclose()
                if keys is not None:
                    await keys.aclose()

        report = anyio.run(go)
        reports.append(report)
        if not args.json:
            print_title(configs, config)
            print_verify(report, sys.stdout)
    if args.json:
        emit_json(configs, [{**r.as_dict(), "sample_seed": seed if args.sample else None} for r in reports])
    return EXIT_OK if not any(r.problems for r in reports) else EXIT_FAILED


def verify_identities(config: Config) -> list[Identity]:
    """The identities ``verify --decrypt`` decrypts with (ConfigError naming what is missing)."""
    return identities(config, why="for verify --decrypt")


def key_checker(config: Config, store: Store, keys: KeyStore | None, found: list[Identity] | None) -> KeyChecker | None:
    """The check of encrypted recordings' keys (None: storage.encryption is not set); with *found*
    identities, every recording is decrypted too."""
    encryption = config.storage.encryption
    if keys is None or encryption is None:
        return None
    decrypter = Decrypter(keys, found) if found is not None else None
    return KeyChecker(store, keys, fingerprint=encryption_fingerprint(encryption.age_recipients), decrypter=decrypter)


async def _nightly(
    config: Config, store: Store, verifier: Verifier, *, recent: int, older: int, seals: tuple[str, ...]
) -> VerifyReport:
    """Re-hash the recent days and the next run of older ones; the ledger keeps where the run stopped.
    *seals*: heads recorded elsewhere, each of which must still be a seal of the chain."""
    today = datetime.now(config.source.tz).date()
    prefix = config.storage.prefix
    chain = await read_chain(store, prefix)
    # The days drawn from are those with objects and those the seals name: a sealed day deleted
    # whole has no folder to list, and must still come round.
    sealed = {day_of_folder(prefix, key.rsplit("/", 1)[0] + "/") for key in chain.sealed()}
    expired = {day_of_folder(prefix, folder) for folder in chain.expired()}
    found = sorted(set(await archive_days(store, prefix)) | {d for d in sealed - expired if d is not None})
    ledger = Ledger.open(config.state.path, store_identity=store_identity(config)) if older else None
    try:
        after = ledger.progress.verify_after() if ledger else None
        chosen, after = nightly_days(found, today, recent=recent, older=older, after=after)
        log.info("verify.days_chosen", days=[d.isoformat() for d in chosen], archive_days=len(found))
        report = await verifier.verify(chosen, deep=True, every_sealed_day=True, recorded_seals=seals)
        if ledger is not None and after is not None:
            ledger.progress.set_verify_after(after)
        return report
    finally:
        if ledger is not None:
            ledger.close()


# -- reconcile --------------------------------------------------------------------------------


def reconcile(args: argparse.Namespace) -> int:
    # The dates, and the days they fall on, in the archive's zone (its seals'), as backfill reads them.
    configs = in_archive_zones(setup(args, quiet=not args.json and sys.stderr.isatty()))
    ranges = [dates(args, config) for config in configs]
    reports = []
    for config, (since, until) in zip(configs, ranges, strict=True):

        async def go(config: Config = config, since: datetime = since, until: datetime = until) -> ReconcileReport:
            async with assemble(config, ledger=Ledger.in_memory(store_identity="reconcile")) as parts:
                return await reconcile_calls(
                    parts.client,
                    parts.store,
                    tz=config.source.tz,
                    prefix=config.storage.prefix,
                    since=since,
                    until=until,
                    concurrency=config.download.concurrency,
                )

        report = anyio.run(go)
        reports.append(report)
        if not args.json:
            print_title(configs, config)
            print_reconcile(report, since, until, sys.stdout, fill=report.fill_command(str(args.config), args.source))
    if args.json:
        emit_json(
            configs,
            [
                dataclasses.asdict(r) | {"consistent": r.consistent, "fill_command": r.fill_command(str(args.config))}
                for r in reports
            ],
        )
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
            documents.append(ledger.progress.status(datetime.now(UTC)))
        finally:
            ledger.close()
    if args.json:
        emit_json(configs, documents)
    else:
        for config, document in zip(configs, documents, strict=True):
            print_title(configs, config)
            print_status(document, sys.stdout)
    return EXIT_OK
