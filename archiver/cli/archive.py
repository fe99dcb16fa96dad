"""The commands that archive: ``run`` (the daemon) and ``backfill``."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, time

import anyio
import attrs
import structlog

from archiver.archive.rearchive import REARCHIVABLE, RearchiveReport
from archiver.cli.common import dates, days, heading, in_archive_zones, setup
from archiver.cli.output import print_rearchive, print_report
from archiver.compose import assemble
from archiver.config.models import Config, StateConfig
from archiver.core import retention
from archiver.core.report import RunReport
from archiver.core.windows import plan_windows
from archiver.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError
from archiver.service.backfill import Backfiller, shared
from archiver.service.preflight import ensure_create_only
from archiver.service.progress import TerminalLogStream
from archiver.service.workers import Workers, report_line, worker_ledger
from archiver.state.ledger import Ledger

log = structlog.get_logger("archiver.cli")

# -- run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from archiver.service.supervisor import Supervisor  # noqa: PLC0415 - the daemon's parts (metrics, health) only here

    configs = setup(args)
    anyio.run(Supervisor(configs).run)
    return EXIT_OK


# -- backfill ---------------------------------------------------------------------------------


def backfill(args: argparse.Namespace) -> int:
    if args.processes < 1:
        raise ConfigError([f"At '--processes': at least 1 (got {args.processes})"], source="the command line")
    if args.processes > 1 and args.worker is None:
        return _backfill_in_processes(args)
    worker: int | None = args.worker
    terminal = sys.stderr.isatty() and not args.dry_run and worker is None
    configs = setup(args, stream=TerminalLogStream(sys.stderr) if terminal else None, quiet=terminal)
    if worker is not None:  # a ledger of its own, so also a claim owner of its own
        configs = tuple(attrs.evolve(c, state=StateConfig(path=worker_ledger(c.state.path, worker))) for c in configs)
        structlog.contextvars.bind_contextvars(worker=worker)
    configs = in_archive_zones(configs)
    ranges = [dates(args, config) for config in configs]  # every --since/--until problem before any work
    kept = [(c, _kept(c, *span)) for c, span in zip(configs, ranges, strict=True)]
    configs = tuple(c for c, span in kept if span is not None)
    ranges = [span for _, span in kept if span is not None]
    if not configs:
        return EXIT_OK
    if args.dry_run:
        return max(_dry_run(configs, config, *span) for config, span in zip(configs, ranges, strict=True))
    backfiller = Backfiller(configs, ranges, terminal=terminal)
    if not backfiller.spread():
        return _interrupted()
    worst = EXIT_OK
    reports = []
    for index, config in enumerate(configs):
        title = heading(configs, config)
        if title and worker is None:
            print(title, flush=True)
        report = backfiller.run(index)
        if report is None and worker is None:
            return _interrupted()
        report = report or RunReport(interrupted=True)  # a worker still hands its parent a report
        reports.append(report)
        if worker is None:
            print_report(report, sys.stdout)
        if not report.complete:
            worst = EXIT_FAILED
    if worker is not None:
        print(report_line(reports), flush=True)
    return worst


def _kept(config: Config, since: datetime, until: datetime) -> tuple[datetime, datetime] | None:
    """The part of ``[since, until)`` that retention still keeps: the calls of an expired day are
    never archived again (None: none of the range is kept)."""
    keep = config.retention.keep
    if keep is None:
        return since, until
    tz = config.source.tz
    first = datetime.combine(retention.first_kept(datetime.now(tz), keep, tz), time(0), tz)  # as expire reckons
    if since >= first:
        return since, until
    log.warning(
        "backfill.expired_days_skipped",
        since=since.date().isoformat(),
        until=min(first, until).date().isoformat(),
        policy=config.retention.policy,
        hint="retention.keep no longer keeps these days: archiving them again would undo `archiver expire`",
    )
    if until <= first:
        print(f"nothing to backfill: every day of the range is older than retention.keep ({config.retention.policy})")
        return None
    return first, until


def _backfill_in_processes(args: argparse.Namespace) -> int:
    """The backfill by ``--processes`` workers: one bar, one summary, the worst exit code."""
    terminal = sys.stderr.isatty()
    configs = setup(args, quiet=terminal)
    if args.dry_run:
        raise ConfigError(
            ["At '--processes': a dry run reads the API once; leave --processes out"], source="the command line"
        )
    unshared = [c.name or c.storage.url for c in configs if not shared(c)]
    if unshared:
        raise ConfigError(
            [
                "At '--processes': the workers share the range through claims in the bucket, which needs an s3:// "
                f"archive with coordination.enabled (not {', '.join(unshared)})"
            ],
            source="the command line",
        )
    configs = in_archive_zones(configs)
    ranges = [dates(args, config) for config in configs]
    # Every worker must read the same range (the claims are kept per range): fix "now" and "today" here.
    since, until = ranges[0]
    argv = [*(["--log-level", args.log_level] if args.log_level else []), "backfill", "-c", str(args.config)]
    argv += ["--since", f"{since:%Y-%m-%d %H:%M}", "--until", f"{until:%Y-%m-%d %H:%M}"]
    argv += ["--source", args.source] if args.source else []
    total_days = sum(len(plan_windows(s, u, c.source.tz)) for c, (s, u) in zip(configs, ranges, strict=True))
    workers = Workers(argv, args.processes, total_days=total_days, terminal=terminal)
    merged, codes = workers.run()
    for error in workers.errors:
        print(f"archiver: {error}", file=sys.stderr)
    if merged is None:
        return EXIT_USAGE if EXIT_USAGE in codes else EXIT_FAILED
    for config, report in zip(configs, merged, strict=True):
        title = heading(configs, config)
        if title:
            print(title, flush=True)
        print_report(report, sys.stdout)
    print(f"{args.processes} processes; calls stored by {len(workers.progress.workers_seen)} of them", flush=True)
    if any(r.interrupted for r in merged):
        return _interrupted()
    return EXIT_OK if all(code == EXIT_OK for code in codes) and all(r.complete for r in merged) else EXIT_FAILED


# -- rearchive --------------------------------------------------------------------------------


def rearchive(args: argparse.Namespace) -> int:
    configs = setup(args, quiet=sys.stderr.isatty())
    statuses = frozenset(s.strip() for s in args.status.split(",") if s.strip())
    if not statuses or not statuses <= REARCHIVABLE:
        raise ConfigError(
            [f"At '--status': a list of {', '.join(sorted(REARCHIVABLE))} (got {args.status!r})"],
            source="the command line",
        )
    calls = frozenset(args.call)
    worst = EXIT_OK
    for config in in_archive_zones(configs):
        chosen = days(args, config)

        async def go(config: Config = config, chosen: list[date] = chosen) -> RearchiveReport:
            async with assemble(config) as parts:
                if not args.dry_run:
                    await ensure_create_only(parts)
                return await parts.rearchiver.run(chosen, statuses=statuses, call_ids=calls, dry_run=args.dry_run)

        report = anyio.run(go)
        title = heading(configs, config)
        if title:
            print(title)
        print_rearchive(report, sys.stdout, dry_run=args.dry_run)
        if not report.complete:
            worst = EXIT_FAILED
    return worst


def _interrupted() -> int:
    print("backfill interrupted; run it again to finish (nothing is written twice)", file=sys.stderr)
    return EXIT_FAILED


def _dry_run(configs: tuple[Config, ...], config: Config, since: datetime, until: datetime) -> int:
    from archiver.audit.plan import plan  # noqa: PLC0415 - only the dry run reads the API this way

    async def go() -> dict[date, dict[str, int]]:
        async with assemble(config, ledger=Ledger.in_memory(store_identity="dry-run")) as parts:
            return await plan(
                parts.client, parts.store, tz=config.source.tz, prefix=config.storage.prefix, since=since, until=until
            )

    found = anyio.run(go)
    title = heading(configs, config)
    if title:
        print(title)
    print(f"plan for {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} ({config.source.tz.key}), nothing written:")
    print(f"{'day':<12}{'calls':>8}{'recordings':>12}{'stored':>8}{'to archive':>12}")
    total = dict.fromkeys(("calls", "recordings", "stored", "to_archive"), 0)
    for day, counts in found.items():
        print(
            f"{day.isoformat():<12}{counts['calls']:>8}{counts['recordings']:>12}{counts['stored']:>8}{counts['to_archive']:>12}"
        )
        for key in total:
            total[key] += counts[key]
    print(f"{'total':<12}{total['calls']:>8}{total['recordings']:>12}{total['stored']:>8}{total['to_archive']:>12}")
    return EXIT_OK
