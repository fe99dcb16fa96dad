"""The commands of an archive's later years: ``expire``, ``erase``, ``restore`` and ``rekey``.

None of them needs the PBX: a configuration without its credentials serves them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

import anyio
from tqdm import tqdm

from archiver.archive.seal import Sealer
from archiver.archive.zone import archive_zone
from archiver.audit.catalog import Catalog
from archiver.cli.common import days, print_title, setup
from archiver.cli.lookup import only_config
from archiver.compose.stores import make_key_store, make_store
from archiver.config.identity import identities
from archiver.config.models import Config
from archiver.core.clock import SystemClock
from archiver.core.quantities import format_size
from archiver.errors import EXIT_FAILED, EXIT_OK, ConfigError
from archiver.lifecycle.erase import Eraser, EraseReport
from archiver.lifecycle.expire import Expirer, ExpireReport
from archiver.lifecycle.rekey import Rekeyer, RekeyReport
from archiver.lifecycle.restore import Restorer, RestoreState

# -- expire -----------------------------------------------------------------------------------


def expire(args: argparse.Namespace) -> int:
    configs = setup(args, read_only=True)
    documents: list[dict[str, object]] = []
    for config in configs:
        if not args.json:
            print_title(configs, config)
        keep, policy = config.retention.keep, config.retention.policy
        if keep is None or policy is None:
            if not args.json:
                print("nothing expires: retention.keep is null (the archive keeps everything)")
            documents.append({"policy": None, "days": []})
            continue

        async def go(config: Config = config, keep: timedelta = keep, policy: str = policy) -> ExpireReport:
            store = make_store(config)
            keys = make_key_store(config)
            try:
                clock = SystemClock()
                sealer = Sealer(store, config.storage.prefix, clock, concurrency=config.download.concurrency)
                expirer = Expirer(
                    store,
                    config.storage.prefix,
                    tz=config.source.tz_given,  # None: the archive's seals say the zone
                    keep=keep,
                    policy=policy,
                    clock=clock,
                    sealer=sealer,
                    concurrency=config.download.concurrency,
                    keys=keys,
                )
                return await expirer.run(dry_run=args.dry_run)
            finally:
                await store.aclose()
                if keys is not None:
                    await keys.aclose()

        report = anyio.run(go)
        documents.append(report.as_dict())
        if not args.json:
            _print_expire(report)
    if args.json:
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    return EXIT_OK


def _print_expire(report: ExpireReport) -> None:
    print(f"retention {report.policy}: the days before {report.first_kept.isoformat()} expire")
    for day in report.days:
        if report.dry_run:
            print(f"would expire {day.day.isoformat()}: {day.objects} object(s)")
            continue
        verb = "expired" if day.recorded_now else "finished expiring"
        print(
            f"{verb} {day.day.isoformat()}: {day.removed} object version(s) removed"
            + (f", {day.keys_removed} key version(s) destroyed" if day.keys_removed else "")
        )
        for hold in day.held:
            print(f"HELD  {hold}: left in place until it may be removed")
    if report.dry_run:
        print(f"{len(report.days)} day(s) would expire (dry run: nothing was recorded or removed)")
        return
    held = len(report.held)
    print(
        f"{sum(d.recorded_now for d in report.days)} day(s) expired under retention {report.policy}"
        + (f"; {held} object(s) held by Object Lock, removed by a later run when their retention ends" if held else "")
        + ("" if report.days else " (nothing older than retention)")
    )


# -- erase ------------------------------------------------------------------------------------


def erase(args: argparse.Namespace) -> int:
    config = only_config(setup(args, read_only=True))
    reason = " ".join(args.reason.split())
    if not reason:
        raise ConfigError(
            ["At '--reason': say why the call is erased (a request's reference, a court order)"],
            source="the command line",
        )
    call_id = args.call_id.strip().lower()

    async def go() -> EraseReport:
        store = make_store(config)
        keys = make_key_store(config)
        try:
            eraser = Eraser(
                store,
                config.storage.prefix,
                tz=config.source.tz_given,  # None: the archive's seals say the zone
                clock=SystemClock(),
                concurrency=config.download.concurrency,
                keys=keys,
                control_prefix=config.control_prefix,
            )
            try:
                return await eraser.erase(
                    call_id, reason, bypass_governance=args.bypass_governance, dry_run=args.dry_run
                )
            except ValueError as exc:  # not a call id
                raise ConfigError([f"At 'CALL_ID': {exc}"], source="the command line") from None
        finally:
            await store.aclose()
            if keys is not None:
                await keys.aclose()

    report = anyio.run(go)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return EXIT_OK
    total = sum(r.size or 0 for r in report.removed)
    if report.already_erased:
        print(f"call {report.call_id} ({report.day}) was erased already: {report.revision_key}")
    elif report.dry_run:
        print(f"would erase call {report.call_id} ({report.day}), recording a revision {report.revision_key}:")
    else:
        print(f"erased call {report.call_id} ({report.day}): the erasure is recorded in {report.revision_key}")
    for removed in report.removed:
        print(f"  {removed.key}  {removed.size} bytes  sha256 {removed.sha256}")
    for shredded in report.shredded:
        print(
            f"  {shredded.key}  {shredded.size} bytes  sha256 {shredded.sha256}  encrypted: crypto-shredded, its key "
            f"destroyed ({len(shredded.key_objects)} key object version(s)); the recording stays, unreadable"
        )
    if report.dry_run:
        print(
            f"dry run: nothing was written or removed ({len(report.removed)} recording(s), {format_size(total)}"
            + (f"; {len(report.shredded)} to crypto-shred" if report.shredded else "")
            + ")"
        )
    else:
        print(
            f"{report.versions_removed} object version(s) removed"
            + (f"; {report.key_versions_removed} key version(s) destroyed" if report.shredded else "")
        )
    return EXIT_OK


# -- restore ----------------------------------------------------------------------------------


def restore(args: argparse.Namespace) -> int:
    config = only_config(setup(args, read_only=True))
    if bool(args.call_ids) == bool(args.since):
        raise ConfigError(
            ["At 'CALL_ID/--since': name the calls, or give --since (and --until); one of the two"],
            source="the command line",
        )
    if not 1 <= args.days <= 36500:
        raise ConfigError([f"At '--days': must be between 1 and 36500 (got {args.days})"], source="the command line")
    range_days = days(args, config) if args.since else []

    async def go() -> list[RestoreState]:
        store = make_store(config)
        try:
            catalog = Catalog(store, config.storage.prefix, config.source.tz, concurrency=config.download.concurrency)
            restorer = Restorer(store, catalog)
            if args.since:
                return await restorer.range(range_days, args.days)
            try:
                return await restorer.calls([c.strip().lower() for c in args.call_ids], args.days)
            except ValueError as exc:
                raise ConfigError([f"At 'CALL_ID': {exc}"], source="the command line") from None
        finally:
            await store.aclose()

    states = anyio.run(go)
    if args.json:
        print(json.dumps([s.as_dict() for s in states], indent=2))
    else:
        for state in states:
            print(f"{state.call_id}  {state.key or '-'}  {state.state}")
        print(f"{len(states)} call(s)")
    return EXIT_FAILED if any(s.state == "not in the archive" for s in states) else EXIT_OK


# -- rekey ------------------------------------------------------------------------------------


def rekey(args: argparse.Namespace) -> int:
    configs = setup(args, read_only=True, quiet=not args.json and sys.stderr.isatty())
    documents: list[dict[str, object]] = []
    failed = False
    for config in configs:
        encryption = config.storage.encryption
        if encryption is None:
            raise ConfigError(["At 'storage.encryption': not set: there are no keys to re-wrap"])
        found = identities(
            config, why="to open the keys rekey wraps again (it may hold the old identities and the new)"
        )

        async def go(
            config: Config = config, recipients: tuple[str, ...] = encryption.age_recipients, found: Any = found
        ) -> RekeyReport:
            store = make_store(config)
            keys = make_key_store(config)
            assert keys is not None
            try:
                clock = SystemClock()
                # Its seal states the archive's zone, as every seal does (a configuration naming another stops here).
                zone = await archive_zone(store, config.storage.prefix, config.source.tz_given)
                sealer = Sealer(
                    store,
                    config.storage.prefix,
                    clock,
                    concurrency=config.download.concurrency,
                    timezone=zone.key if zone is not None else None,
                )
                rekeyer = Rekeyer(
                    keys, found, recipients, sealer=sealer, clock=clock, concurrency=config.download.concurrency
                )
                days = await rekeyer.days()
                terminal = sys.stderr.isatty() and not args.json
                with tqdm(total=len(days), unit="day", disable=not terminal, file=sys.stderr, leave=False) as bar:
                    return await rekeyer.run(days, dry_run=args.dry_run, progress=bar.update)
            finally:
                await store.aclose()
                await keys.aclose()

        if not args.json:
            print_title(configs, config)
        report = anyio.run(go)
        failed = failed or bool(report.problems)
        documents.append(report.as_dict())
        if not args.json:
            _print_rekey(report)
    if args.json:
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    return EXIT_FAILED if failed else EXIT_OK


def _print_rekey(report: RekeyReport) -> None:
    to = f"{len(report.recipients)} recipient(s) (set {report.fingerprint})"
    for problem in report.problems:
        print(f"PROBLEM  {problem}")
    if report.dry_run:
        print(
            f"{report.keys} key(s) of recordings: {report.rewrapped} would be wrapped again to {to}, "
            f"{report.current} are already (dry run: nothing was written)"
        )
        return
    print(
        f"{report.keys} key(s) of recordings: {report.rewrapped} wrapped again to {to}, {report.current} were already"
        + (f" ({report.leftovers} old wrapping(s) an earlier run left removed)" if report.leftovers else "")
    )
    if report.unchecked:
        print(
            f"{report.unchecked} new key object(s) read back but not opened again: storage.encryption.identity_file "
            "holds none of today's recipients' identities"
        )
    if report.seal_key:
        print(f"the rotation is recorded in the seal chain: {report.seal_key}")
    elif report.problems:
        print(
            f"{len(report.problems)} key(s) not re-wrapped: run rekey again once they can be (nothing is recorded yet)"
        )
