"""The commands of an archive's later years: ``expire``, ``erase`` and ``restore``.

None of them needs the PBX: a configuration without its credentials serves them.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

import anyio

from archiver.archive.seal import Sealer
from archiver.audit.catalog import Catalog
from archiver.cli.common import days, print_title, setup
from archiver.cli.lookup import only_config
from archiver.compose.stores import make_store
from archiver.config.models import Config
from archiver.core.clock import SystemClock
from archiver.core.quantities import format_size
from archiver.errors import EXIT_FAILED, EXIT_OK, ConfigError
from archiver.lifecycle.erase import Eraser, EraseReport
from archiver.lifecycle.expire import Expirer, ExpireReport
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
                )
                return await expirer.run(dry_run=args.dry_run)
            finally:
                await store.aclose()

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
        print(f"{verb} {day.day.isoformat()}: {day.removed} object version(s) removed")
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
        try:
            eraser = Eraser.on(
                store,
                config.storage.prefix,
                tz=config.source.tz_given,  # None: the archive's seals say the zone
                clock=SystemClock(),
                concurrency=config.download.concurrency,
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
    if report.dry_run:
        print(f"dry run: nothing was written or removed ({len(report.removed)} recording(s), {format_size(total)})")
    else:
        print(f"{report.versions_removed} object version(s) removed")
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
