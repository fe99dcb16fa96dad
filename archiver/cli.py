"""The command line. The only place that maps errors to exit codes.

Exit codes: 0 everything done; 1 work failed or a check found a problem (the output names
each call); 2 usage or configuration error (the message names the key).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import random
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import structlog

from archiver import __version__, logs
from archiver.app import Parts, assemble, make_store, store_identity
from archiver.audit import Auditor, VerifyReport
from archiver.ccall import CcallClient
from archiver.cli_report import print_reconcile, print_report, print_status, print_verify
from archiver.clock import SystemClock
from archiver.config import Config, load_config
from archiver.daemon import Daemon, DeadManPing, supervised
from archiver.demo import run_demo
from archiver.errors import ArchiverError, ConfigError, FatalError, TransientError
from archiver.lease import Lease
from archiver.ledger import Ledger
from archiver.metrics import Health, Metrics, serve
from archiver.notify import Notifier
from archiver.pipeline import RunReport
from archiver.progress import BackfillProgress, TerminalLogStream
from archiver.shards import sharded_backfill
from archiver.simulator import Dataset, Faults, Simulator
from archiver.store import Store, put_bytes
from archiver.store.s3 import S3Store
from archiver.survey import ReconcileReport, Survey
from archiver.windows import parse_date_argument

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = structlog.get_logger("archiver.cli")
SHUTDOWN_GRACE = timedelta(seconds=30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiverError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("archiver: interrupted", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archiver", description="Archive a ccall.vn PBX's call recordings into S3.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", choices=logs.LEVELS, default=None, help="default info (warning under a progress bar)"
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="json lines (the default off a terminal) or readable console lines",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, *, config: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if config:
            sub.add_argument("-c", "--config", type=Path, required=True, metavar="FILE", help="the YAML configuration")
        sub.set_defaults(handler=handler)
        return sub

    command("run", _run, "the daemon: poll the API and archive new calls until stopped")
    backfill = command("backfill", _backfill, "archive every call in a date range, then exit")
    backfill.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD or 'YYYY-MM-DD HH:MM', inclusive")
    backfill.add_argument("--until", metavar="DATE", help="exclusive; default now")
    backfill.add_argument("--dry-run", action="store_true", help="list what would be archived; write nothing")
    verify = command("verify", _verify, "check the archive: every sidecar, recording and manifest")
    verify.add_argument("--since", metavar="DATE", help="first day to check (default: the whole archive)")
    verify.add_argument("--until", metavar="DATE", help="day after the last to check (exclusive)")
    verify.add_argument("--deep", action="store_true", help="download and re-hash every recording")
    verify.add_argument(
        "--sample", type=float, default=0.0, metavar="PERCENT", help="re-hash this share of the recordings"
    )
    verify.add_argument("--json", action="store_true", help="print the report as one JSON document")
    reconcile = command("reconcile", _reconcile, "compare the calls the API lists with the archive, both ways")
    reconcile.add_argument("--since", required=True, metavar="DATE")
    reconcile.add_argument("--until", metavar="DATE", help="exclusive; default now")
    reconcile.add_argument("--json", action="store_true", help="print the report as one JSON document")
    command("check", _check, "check the configuration, the API credentials and the bucket")
    status = command("status", _status, "show the daemon's progress from its ledger (no network)")
    status.add_argument("--json", action="store_true", help="print one JSON document")

    simulate = command("simulate", _simulate, "serve the bundled ccall API simulator", config=False)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--calls-per-day", type=int, default=200)
    simulate.add_argument("--max-duration", type=int, default=60, help="longest ordinary call, seconds")
    simulate.add_argument("--timezone", default="Asia/Ho_Chi_Minh")
    simulate.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="e.g. api_error_rate=0.1, recording_delay=30 (repeatable)",
    )
    simulate.add_argument("--missing-rate", type=float, default=0.0, help="share of recordings never served")

    demo = command("demo", _demo, "archive two days from the simulator into a local folder", config=False)
    demo.add_argument("--dir", type=Path, default=Path("archiver-demo"), help="default ./archiver-demo")
    return parser


def _setup(args: argparse.Namespace, *, stream: logs.LogStream | None = None, quiet: bool = False) -> Config:
    """Load the configuration and set up logging (*quiet*: warnings only, unless --log-level says)."""
    config = load_config(args.config)
    json_lines = {"auto": None, "json": True, "console": False}[args.log_format]
    level = args.log_level or ("warning" if quiet else "info")
    logs.configure(level=level, json_lines=json_lines, secrets=config.secrets(), stream=stream)
    return config


def _dates(args: argparse.Namespace, config: Config) -> tuple[datetime, datetime]:
    tz = config.source.tz
    try:
        since = parse_date_argument(args.since, tz)
        until = parse_date_argument(args.until, tz) if args.until else datetime.now(tz)
    except ValueError as exc:
        raise ConfigError([f"At '--since/--until': {exc}"], source="the command line") from None
    if until <= since:
        raise ConfigError(
            [f"At '--until': {args.until or 'now'} is not after --since {args.since}"], source="the command line"
        )
    return since, until


# -- run --------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    config = _setup(args)
    poll = config.poll
    interval = poll.interval.total_seconds()
    metrics = Metrics()
    metrics.install_retry_hook()
    notifier = Notifier()
    stall = max(300.0, 3 * interval, 2 * (notifier.watchdog_seconds or 0))
    health = Health(stall_after=stall, ready_within=max(180.0, 3 * interval))

    async def go() -> None:
        async with assemble(config, metrics=metrics, health=health) as parts:
            server = _serve_metrics(config, metrics, health)
            try:
                ready = await _preflight(parts.client, parts.store, config)
                if ready:
                    notifier.ready(f"started; archiving into {parts.store.description}")
                ping = DeadManPing(parts.http, poll.ping_url) if poll.ping_url else None
                daemon = Daemon(
                    parts.archiver,
                    lease=_lease(parts, config),
                    ledger=parts.ledger,
                    client=parts.client,
                    poll=poll,
                    clock=SystemClock(),
                    metrics=metrics,
                    health=health,
                    notifier=notifier,
                    ping=ping,
                    ready=ready,
                    secrets=config.secrets(),
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(notifier.watchdog, health)
                    await supervised(parts.archiver, daemon.run, grace=SHUTDOWN_GRACE, on_stop=notifier.stopping)
                    tg.cancel_scope.cancel()
            finally:
                if server is not None:
                    server.shutdown()
            log.info("daemon.stopped")

    anyio.run(go)
    return EXIT_OK


def _lease(parts: Parts, config: Config) -> Lease | None:
    """The lease that lets one of several daemons on this bucket poll this source (S3 only)."""
    if not config.coordination.enabled or not isinstance(parts.store, S3Store):
        return None
    key = "/".join(p for p in (config.storage.prefix, "_archiver", "leases", f"{_source_id(config)}.json") if p)
    return Lease(parts.store, key, ttl=config.coordination.lease_ttl, clock=SystemClock(), owner=_owner(config))


def _owner(config: Config) -> str:
    """Who holds leases and claims: this host and ledger. A process restarted after a crash is
    the same owner, so it picks up its own claims at once instead of waiting for them to expire."""
    ledger = hashlib.sha256(str(config.state.path.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}:{ledger}"


def _source_id(config: Config) -> str:
    """A short, stable name for the ccall source, for control objects."""
    return hashlib.sha256(f"{config.source.base_url}|{config.source.domain_name or ''}".encode()).hexdigest()[:16]


def _serve_metrics(config: Config, metrics: Metrics, health: Health) -> ThreadingHTTPServer | None:
    if config.metrics.listen is None:
        return None
    try:
        server = serve(config.metrics.listen, metrics, health)
    except OSError as exc:
        raise ConfigError([f"At 'metrics.listen': cannot listen on {config.metrics.listen}: {exc.strerror}"]) from None
    log.info("metrics.listening", address=config.metrics.listen)
    return server


async def _preflight(client: CcallClient, store: Store, config: Config) -> bool:
    """True when the API and the bucket both answered; FatalError when either refused us."""
    answered = True
    try:
        regs = await client.registrations()
        log.info("daemon.api_answered", registrations=len(regs))
    except TransientError as exc:
        log.warning("daemon.api_unreachable", error=str(exc))
        answered = False
    try:
        async for _ in store.list_keys("/".join(p for p in (config.storage.prefix, "_archiver/") if p)):
            break
        log.info("daemon.store_answered", store=store.description)
    except TransientError as exc:
        log.warning("daemon.store_unreachable", error=str(exc))
        answered = False
    return answered


# -- backfill ---------------------------------------------------------------------------------


def _backfill(args: argparse.Namespace) -> int:
    terminal = sys.stderr.isatty() and not args.dry_run
    config = _setup(args, stream=TerminalLogStream(sys.stderr) if terminal else None, quiet=terminal)
    since, until = _dates(args, config)
    if args.dry_run:
        return _dry_run(config, since, until)
    progress = BackfillProgress(terminal=terminal)

    async def go() -> RunReport | None:
        async with assemble(config, progress=progress) as parts:
            store = parts.store
            if config.coordination.enabled and isinstance(store, S3Store):
                # Shared by day with any other host running the same backfill on this bucket.
                return await supervised(
                    parts.archiver,
                    lambda: sharded_backfill(
                        parts.archiver,
                        store,
                        prefix=config.storage.prefix,
                        source=_source_id(config),
                        since=since,
                        until=until,
                        tz=config.source.tz,
                        ttl=config.coordination.lease_ttl,
                        clock=SystemClock(),
                        owner=_owner(config),
                    ),
                    grace=SHUTDOWN_GRACE,
                )
            return await supervised(parts.archiver, lambda: parts.archiver.backfill(since, until), grace=SHUTDOWN_GRACE)

    try:
        report = anyio.run(go)
    finally:
        progress.close()
    if report is None:
        print("backfill interrupted; run it again to finish (nothing is written twice)", file=sys.stderr)
        return EXIT_FAILED
    print_report(report, sys.stdout)
    return EXIT_OK if report.complete else EXIT_FAILED


def _dry_run(config: Config, since: datetime, until: datetime) -> int:
    async def go() -> dict[Any, dict[str, int]]:
        async with assemble(config, ledger=Ledger.in_memory(store_identity="dry-run")) as parts:
            return await _survey(parts, config).plan(since, until)

    days = anyio.run(go)
    print(f"plan for {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} ({config.source.timezone}), nothing written:")
    print(f"{'day':<12}{'calls':>8}{'recordings':>12}{'stored':>8}{'to archive':>12}")
    total = dict.fromkeys(("calls", "recordings", "stored", "to_archive"), 0)
    for day, counts in days.items():
        print(
            f"{day.isoformat():<12}{counts['calls']:>8}{counts['recordings']:>12}{counts['stored']:>8}{counts['to_archive']:>12}"
        )
        for key in total:
            total[key] += counts[key]
    print(f"{'total':<12}{total['calls']:>8}{total['recordings']:>12}{total['stored']:>8}{total['to_archive']:>12}")
    return EXIT_OK


# -- check ------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    config = _setup(args)
    print(f"ok    config {args.config}")

    async def go() -> int:
        worst = EXIT_OK
        async with assemble(config) as parts:
            print(f"ok    ledger {config.state.path}")
            try:
                regs = await parts.client.registrations()
                print(
                    f"ok    ccall API {config.source.base_url}: credentials accepted, {len(regs)} registered device(s)"
                )
            except FatalError as exc:
                print(f"FAIL  ccall API: {exc}")
                worst = EXIT_USAGE
            except TransientError as exc:
                print(f"FAIL  ccall API: {exc}")
                worst = max(worst, EXIT_FAILED)
            if isinstance(parts.store, S3Store):
                features = await _check_bucket_features(parts.store, config)
                if features != EXIT_OK:
                    return features  # every write would be refused; no point probing
            probe = "/".join(p for p in (config.storage.prefix, "_archiver", "check", f"{uuid.uuid4()}.txt") if p)
            data = f"archiver check {datetime.now().isoformat()}\n".encode()
            try:
                await put_bytes(parts.store, probe, data, "text/plain")
                read_back = await parts.store.read(probe)
                await parts.store.delete(probe)
                if read_back != data:
                    raise TransientError(f"read back {len(read_back)} bytes that differ from the {len(data)} written")
                print(f"ok    store {parts.store.description}: create-only write, read and delete work")
            except FatalError as exc:
                print(f"FAIL  store: {exc}")
                worst = EXIT_USAGE
            except (TransientError, ArchiverError) as exc:
                print(f"FAIL  store {parts.store.description}: {exc}")
                worst = max(worst, EXIT_FAILED)
        return worst

    return anyio.run(go)


def _verify(args: argparse.Namespace) -> int:
    config = _setup(args, quiet=not args.json and sys.stderr.isatty())
    if not 0 <= args.sample <= 100:
        raise ConfigError([f"At '--sample': a percentage from 0 to 100 (got {args.sample})"], source="the command line")
    days = _days(args, config) if args.since or args.until else None
    seed = random.SystemRandom().randrange(1 << 32)

    async def go() -> VerifyReport:
        store = make_store(config)
        try:
            auditor = Auditor(
                store, config.storage.prefix, concurrency=config.download.concurrency, rng=random.Random(seed)
            )
            return await auditor.verify(days, deep=args.deep, sample_percent=args.sample)
        finally:
            await store.aclose()

    report = anyio.run(go)
    if args.json:
        print(json.dumps({**report.as_dict(), "sample_seed": seed if args.sample else None}, indent=2))
    else:
        print_verify(report, sys.stdout)
    return EXIT_OK if not report.problems else EXIT_FAILED


def _days(args: argparse.Namespace, config: Config) -> list[date]:
    """The local days from --since up to (not including) --until."""
    if not args.since:
        raise ConfigError(["At '--until': give --since too"], source="the command line")
    since, until = _dates(args, config)
    last = (until - timedelta(microseconds=1)).astimezone(config.source.tz).date()
    return [since.date() + timedelta(days=i) for i in range((last - since.date()).days + 1)]


def _survey(parts: Parts, config: Config) -> Survey:
    return Survey(
        parts.client,
        parts.store,
        tz=config.source.tz,
        prefix=config.storage.prefix,
        concurrency=config.download.concurrency,
    )


def _reconcile(args: argparse.Namespace) -> int:
    config = _setup(args, quiet=not args.json and sys.stderr.isatty())
    since, until = _dates(args, config)

    async def go() -> ReconcileReport:
        async with assemble(config, ledger=Ledger.in_memory(store_identity="reconcile")) as parts:
            return await _survey(parts, config).reconcile(since, until)

    report = anyio.run(go)
    if args.json:
        print(json.dumps(dataclasses.asdict(report) | {"consistent": report.consistent}, indent=2))
    else:
        print_reconcile(report, since, until, sys.stdout)
    return EXIT_OK if report.consistent else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    config = _setup(args)
    path = config.state.path
    if not path.exists():
        print(
            f"archiver: no ledger at {path} (state.path): the archiver has not run with this configuration",
            file=sys.stderr,
        )
        return EXIT_FAILED
    ledger = Ledger.open(path, store_identity=store_identity(config))
    try:
        status = ledger.status(datetime.now(UTC))
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status, sys.stdout)
    return EXIT_OK


async def _check_bucket_features(store: S3Store, config: Config) -> int:
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
    )
    return EXIT_OK


# -- simulate and demo ------------------------------------------------------------------------


def _simulate(args: argparse.Namespace) -> int:
    try:
        faults = Faults.parse(args.fault)
        tz = ZoneInfo(args.timezone)
    except (ValueError, KeyError) as exc:
        raise ConfigError([f"At '--fault/--timezone': {exc}"], source="the command line") from None
    dataset = Dataset(
        seed=args.seed,
        calls_per_day=args.calls_per_day,
        max_duration=args.max_duration,
        tz=tz,
        recording_missing_rate=args.missing_rate,
    )
    try:
        sim = Simulator(dataset, host=args.host, port=args.port, faults=faults, seed=args.seed)
    except OSError as exc:
        raise ConfigError(
            [f"At '--host/--port': cannot listen on {args.host}:{args.port}: {exc.strerror}"], source="the command line"
        ) from None
    print(
        f"ccall simulator on {sim.url}  api_key={sim.api_key} api_secret={sim.api_secret}  (Ctrl-C stops)", flush=True
    )
    # Stop on SIGTERM as on Ctrl-C, even where SIGINT was ignored when we started (a background job).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()
    return EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.dir.resolve(), sys.stdout)
