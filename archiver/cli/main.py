"""The command line's entry point: the parser, and the one mapping of errors to exit codes.

Each command's handler lives in a module of its own (``archive``, ``audit``, ``check``,
``demo``), imported only when the command runs. Handlers return an exit code; an error that
escapes one is mapped here. Nothing outside ``archiver.cli`` decides an exit code.

Exit codes: 0 everything done; 1 work failed or a check found a problem (the output names
each call); 2 usage or configuration error (the message names the key).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver import __version__
from archiver.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArchiverError, ConfigError, FatalError
from archiver.service import logs


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    started = time.time()
    code = EXIT_FAILED  # unless the command says otherwise: an error no handler mapped
    try:
        code = _run(args)
    finally:
        if getattr(args, "metrics_file", None) is not None:
            _record(args, started, code)
    return code


def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except FatalError as exc:  # ConfigError among them: a person must change something
        return _failed(args, exc, EXIT_USAGE)
    except ArchiverError as exc:
        return _failed(args, exc, EXIT_FAILED)
    except KeyboardInterrupt:
        return _failed(args, "interrupted", EXIT_FAILED)


def _record(args: argparse.Namespace, started: float, code: int) -> None:
    """Write how a scheduled command ended to --metrics-file, whatever the end; a file that cannot
    be written is said on stderr and leaves the exit code alone (the alert on a result that
    stopped coming covers it)."""
    from archiver.service.results import write_result  # noqa: PLC0415 - only scheduled runs load prometheus_client

    try:
        write_result(args.metrics_file, args.command, started=started, finished=time.time(), exit_code=code)
    except OSError as exc:
        print(f"archiver: cannot write --metrics-file {args.metrics_file}: {exc.strerror}", file=sys.stderr)


def _failed(args: argparse.Namespace, error: BaseException | str, code: int) -> int:
    """Say why the command ends, as its log lines are written: one JSON object off a terminal
    (the journal stays one object per line), a plain line on one. The exit code."""
    json_lines = {"json": True, "console": False}.get(args.log_format, not sys.stderr.isatty())
    if json_lines:
        event: dict[str, object] = {"event": "command.failed", "level": "error", "error": str(error)}
        if isinstance(error, ConfigError):
            event["problems"] = error.problems
        event |= {"exit_code": code, "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        print(json.dumps(event, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"archiver: {error}", file=sys.stderr)
    if os.environ.get("NOTIFY_SOCKET"):
        _tell_systemd(error, code)
    return code


def _tell_systemd(error: BaseException | str, code: int) -> None:
    """Under systemd (``archiver.service`` is ``Type=notify``), say why the command stopped in the
    unit's status line, which ``systemctl status`` shows in full after the process ended; the
    journal's JSON line is cut to the terminal's width there."""
    from archiver.service.notify import Notifier  # noqa: PLC0415 - only a command systemd started needs it

    problems = error.problems if isinstance(error, ConfigError) else []
    said = problems[0] if problems else (str(error).splitlines() or [""])[0]
    more = f" (and {len(problems) - 1} more problem(s): journalctl -u archiver)" if len(problems) > 1 else ""
    Notifier().status(f"stopped with exit code {code}: {said}{more}")


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
            sub.add_argument("--source", metavar="NAME", help="only this one of the file's sources: (default: all)")
        sub.set_defaults(handler=handler)
        return sub

    def scheduled(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--metrics-file",
            type=Path,
            metavar="FILE.prom",
            help="write how the run ended (time, exit code) there as Prometheus metrics, for the daemon's "
            "/metrics (metrics.textfile_dir) or the node exporter's textfile collector",
        )

    command("run", _lazy("archive", "run"), "the daemon: poll the API and archive new calls until stopped")
    backfill = command("backfill", _lazy("archive", "backfill"), "archive every call in a date range, then exit")
    backfill.add_argument(
        "--since", required=True, metavar="DATE", help="YYYY-MM-DD, 'YYYY-MM-DD HH:MM', today or yesterday; inclusive"
    )
    backfill.add_argument("--until", metavar="DATE", help="exclusive; default now")
    backfill.add_argument("--dry-run", action="store_true", help="list what would be archived; write nothing")
    backfill.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes that share the range by day (an s3:// archive; default 1)",
    )
    backfill.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one of --processes' workers
    verify = command("verify", _lazy("audit", "verify"), "check the archive: every sidecar, recording and manifest")
    verify.add_argument("--since", metavar="DATE", help="first day to check (default: the whole archive)")
    verify.add_argument("--until", metavar="DATE", help="day after the last to check (exclusive)")
    verify.add_argument("--deep", action="store_true", help="download and re-hash every recording")
    verify.add_argument(
        "--decrypt",
        action="store_true",
        help="also decrypt every encrypted recording with storage.encryption.identity_file and compare it with the "
        "plaintext its record states",
    )
    verify.add_argument(
        "--sample", type=float, default=0.0, metavar="PERCENT", help="re-hash this share of the recordings"
    )
    verify.add_argument(
        "--recent", type=int, metavar="DAYS", help="re-hash every recording of the last DAYS days (today included)"
    )
    verify.add_argument(
        "--older",
        type=int,
        default=0,
        metavar="DAYS",
        help="with --recent: also re-hash DAYS earlier days, a different run of them each night",
    )
    verify.add_argument(
        "--recorded-seal",
        action="append",
        default=[],
        metavar="SHA256",
        help="a seal digest recorded elsewhere (a head an earlier verify printed): it must still be in the chain",
    )
    verify.add_argument("--json", action="store_true", help="print the report as one JSON document")
    scheduled(verify)
    reconcile = command(
        "reconcile", _lazy("audit", "reconcile"), "compare the calls the API lists with the archive, both ways"
    )
    reconcile.add_argument("--since", required=True, metavar="DATE")
    reconcile.add_argument("--until", metavar="DATE", help="exclusive; default now")
    reconcile.add_argument("--json", action="store_true", help="print the report as one JSON document")
    scheduled(reconcile)
    rearchive = command(
        "rearchive",
        _lazy("archive", "rearchive"),
        "fetch the recordings of calls recorded missing, rejected (or none) again; write a revision where it changed",
    )
    rearchive.add_argument("--since", required=True, metavar="DATE")
    rearchive.add_argument("--until", metavar="DATE", help="exclusive; default now")
    rearchive.add_argument(
        "--status",
        default="missing,rejected",
        metavar="LIST",
        help="the current outcomes to read again: missing, rejected, none (default missing,rejected)",
    )
    rearchive.add_argument("--call", action="append", default=[], metavar="ID", help="only this call (repeatable)")
    rearchive.add_argument("--dry-run", action="store_true", help="list the calls it would read again; write nothing")
    find = command("find", _lazy("lookup", "find"), "find calls in the archive by number, extension, time or outcome")
    find.add_argument("--number", metavar="N", help="source or destination, in any form: +84 986…, 84986…, 0986…")
    find.add_argument("--extension", metavar="E", help="an extension, as source or destination")
    find.add_argument("--direction", choices=("inbound", "outbound", "local"))
    find.add_argument(
        "--status", metavar="LIST", help="recording outcomes: archived, none, missing, rejected, superseded, erased"
    )
    find.add_argument("--since", metavar="DATE", help="calls started from then (default: the whole archive)")
    find.add_argument("--until", metavar="DATE", help="calls started before then; default now")
    find.add_argument(
        "--sip-call-id", metavar="ID", help="ask the PBX for this SIP Call-ID, and say where the archive holds it"
    )
    found_as = find.add_mutually_exclusive_group()
    found_as.add_argument("--json", action="store_true", help="print a JSON list")
    found_as.add_argument("--csv", action="store_true", help="print CSV, numbers kept as text for spreadsheets")
    show = command("show", _lazy("lookup", "show"), "one call: its records, recordings, manifests and seals, checked")
    show.add_argument("call_id", metavar="CALL_ID")
    show.add_argument("--json", action="store_true", help="print one JSON document")
    export = command(
        "export", _lazy("lookup", "export"), "write an evidence bundle (zip) of calls, with how to check each file"
    )
    export.add_argument("call_ids", nargs="+", metavar="CALL_ID")
    export.add_argument("--out", type=Path, required=True, metavar="FILE.zip")
    browse = command("browse", _lazy("browse", "browse"), "a read-only web UI over the archive, for auditors")
    browse.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080 (this machine only)"
    )
    trail = command("access", _lazy("access", "access"), "read the access trail: who read which call, and when")
    trail.add_argument("--since", metavar="DATE")
    trail.add_argument("--until", metavar="DATE", help="exclusive")
    trail.add_argument("--call", metavar="ID", help="only this call")
    trail.add_argument("--user", metavar="U", help="only this user")
    trail.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help="only what browse.scopes lets USER see (their groups from browse.users_file, and --group)",
    )
    trail.add_argument(
        "--group", action="append", default=[], metavar="G", help="with --as: a group USER is in (repeatable)"
    )
    trail.add_argument("--json", action="store_true", help="print a JSON list of the events")
    expire = command(
        "expire",
        _lazy("retention", "expire"),
        "remove every day retention.keep no longer keeps, after recording the expiry in the seal chain",
    )
    expire.add_argument("--dry-run", action="store_true", help="list the days that would expire; change nothing")
    expire.add_argument("--json", action="store_true", help="print the report as one JSON document")
    scheduled(expire)
    erase = command(
        "erase",
        _lazy("retention", "erase"),
        "remove a call's recordings, every version, on request; a revision records why, when and what",
    )
    erase.add_argument("call_id", metavar="CALL_ID")
    erase.add_argument("--reason", required=True, metavar="TEXT", help="why (a request's reference, a court order)")
    erase.add_argument(
        "--bypass-governance",
        action="store_true",
        help="lift GOVERNANCE Object Lock retention (needs s3:BypassGovernanceRetention)",
    )
    erase.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    erase.add_argument("--json", action="store_true", help="print the report as one JSON document")
    restore = command(
        "restore", _lazy("retention", "restore"), "bring recordings in cold storage (GLACIER, DEEP_ARCHIVE) back"
    )
    restore.add_argument("call_ids", nargs="*", metavar="CALL_ID")
    restore.add_argument("--since", metavar="DATE", help="every archived call from then (instead of CALL_IDs)")
    restore.add_argument("--until", metavar="DATE", help="exclusive; default now")
    restore.add_argument(
        "--days", type=int, default=7, metavar="N", help="how long the copy stays readable (default 7)"
    )
    restore.add_argument("--json", action="store_true", help="print a JSON list")
    rekey = command(
        "rekey",
        _lazy("retention", "rekey"),
        "wrap every encrypted recording's key again to today's storage.encryption.age_recipients",
    )
    rekey.add_argument(
        "--dry-run", action="store_true", help="count the keys that would be wrapped again; change nothing"
    )
    rekey.add_argument("--json", action="store_true", help="print the report as one JSON document")
    command("check", _lazy("check", "check"), "check the configuration, the API credentials and the bucket")
    status = command("status", _lazy("audit", "status"), "show the daemon's progress from its ledger (no network)")
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
    simulate.add_argument(
        "--dialect",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="answer as a variant server does, e.g. link_field=recording, bare_rows=1, empty=null (repeatable)",
    )

    demo = command("demo", _demo, "archive two days from the simulator into a local folder", config=False)
    demo.add_argument("--dir", type=Path, default=Path("archiver-demo"), help="default ./archiver-demo")
    return parser


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The handler *name* of ``archiver.cli.<module>``, imported when the command runs: --help,
    --version and usage errors answer at once, without loading boto3, httpx and the rest."""

    def handler(args: argparse.Namespace) -> int:
        # Loading a command makes some 300,000 objects that live as long as the process. Python's
        # collector would scan them while they load (~15 ms a full pass) and again at every later
        # full pass; so it waits, and then they are set aside as permanent (gc.freeze).
        gc.disable()
        try:
            run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f"archiver.cli.{module}"), name)
        finally:
            gc.freeze()
            gc.enable()
        return run(args)

    return handler


# -- simulate and demo ------------------------------------------------------------------------


def _simulate(args: argparse.Namespace) -> int:
    try:
        from archiver.simulator import Dataset, Dialect, Faults, Simulator  # noqa: PLC0415 - only this command needs it

        faults = Faults.parse(args.fault)
        dialect = Dialect.parse(args.dialect)
        tz = ZoneInfo(args.timezone)
    except (ValueError, KeyError) as exc:
        raise ConfigError([f"At '--fault/--dialect/--timezone': {exc}"], source="the command line") from None
    dataset = Dataset(
        seed=args.seed,
        calls_per_day=args.calls_per_day,
        max_duration=args.max_duration,
        tz=tz,
        recording_missing_rate=args.missing_rate,
    )
    try:
        sim = Simulator(dataset, host=args.host, port=args.port, faults=faults, seed=args.seed, dialect=dialect)
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
    from archiver.cli.demo import run_demo  # noqa: PLC0415 - brings the simulator, which no other command needs

    return run_demo(args.dir.resolve(), sys.stdout)
