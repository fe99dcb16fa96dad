"""The auditor's commands: ``find``, ``show`` and ``export``. They read the bucket only (``find
--sip-call-id`` also asks the PBX), so a configuration without PBX credentials serves them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TextIO

import anyio
from tqdm import tqdm

from archiver.audit import bundle
from archiver.audit.access import AccessTrail, os_user
from archiver.audit.catalog import CallFiles, Catalog, Found, Query, parse_statuses
from archiver.audit.evidence import Evidence, examine
from archiver.cli.common import dates, decrypter, setup
from archiver.compose import assemble
from archiver.compose.stores import make_key_store, make_store
from archiver.config.models import Config
from archiver.core import dayfiles
from archiver.core.cdr import parse_row
from archiver.core.clock import SystemClock
from archiver.errors import EXIT_FAILED, EXIT_OK, ArchiverError, ConfigError, ObjectInColdStorage
from archiver.state.ledger import Ledger
from archiver.store import Store
from archiver.store.seals import read_chain


def _query(args: argparse.Namespace, config: Config) -> Query:
    since = until = None
    if args.since or args.until:
        if args.since:
            since, until = dates(args, config)
        else:
            raise ConfigError(["At '--until': give --since too"], source="the command line")
    statuses = None
    if args.status:
        try:
            statuses = parse_statuses(args.status)
        except ValueError as exc:
            raise ConfigError([f"At '--status': {exc}"], source="the command line") from None
    return Query(
        number=args.number,
        extension=args.extension,
        direction=args.direction,
        statuses=statuses,
        since=since,
        until=until,
        country_code=config.source.country_code,
    )


# -- find -------------------------------------------------------------------------------------


def find(args: argparse.Namespace) -> int:
    terminal = sys.stderr.isatty() and not (args.json or args.csv)
    configs = setup(args, quiet=True, read_only=not args.sip_call_id)
    if args.sip_call_id:
        return _find_sip(configs, args)
    results: list[tuple[Config, list[Found]]] = []
    for config in configs:
        query = _query(args, config)

        async def go(config: Config = config, query: Query = query) -> list[Found]:
            store = make_store(config)
            try:
                catalog = Catalog(
                    store, config.storage.prefix, config.source.tz, concurrency=config.download.concurrency
                )
                days = await catalog.days(query.since, query.until)
                with tqdm(total=len(days), unit="day", disable=not terminal, file=sys.stderr, leave=False) as bar:
                    return await catalog.find(query, days=days, progress=bar.update)
            finally:
                await store.aclose()

        results.append((config, anyio.run(go)))
    many = len(configs) > 1
    rows = [(config.name, found) for config, founds in results for found in founds]
    if args.json:
        print(json.dumps([{**f.as_dict(), **({"source": name} if many else {})} for name, f in rows], indent=2))
    elif args.csv:
        _print_csv(rows, many, sys.stdout)
    else:
        _print_table(rows, many, sys.stdout)
    return EXIT_OK


def _print_csv(rows: list[tuple[str | None, Found]], many: bool, out: TextIO) -> None:
    columns = ["day", *dayfiles.CSV_COLUMNS, "sidecar_key"]
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow((["source"] if many else []) + columns)
    for name, found in rows:
        values = found.as_dict()
        writer.writerow(([name] if many else []) + [dayfiles.csv_cell(c, values[c]) for c in columns])


def _print_table(rows: list[tuple[str | None, Found]], many: bool, out: TextIO) -> None:
    header = ["start", "direction", "from", "to", "seconds", "recording", "call id"]
    table = []
    for name, found in rows:
        e = found.entry
        seconds = "" if e.duration_seconds is None else f"{e.duration_seconds:g}"
        cells = [e.start.replace("T", " ")[:19], e.direction, e.source, e.destination, seconds]
        table.append(
            ([name or ""] if many else []) + [str(c or "") for c in cells] + [e.recording_status or "", e.call_id]
        )
    header = (["source"] if many else []) + header
    widths = [max([len(header[i]), *(len(r[i]) for r in table)]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(), file=out)
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
    print(f"{len(table)} call(s)", file=out)


def _find_sip(configs: tuple[Config, ...], args: argparse.Namespace) -> int:
    """Ask the PBX for the call with this SIP Call-ID, then say where the archive holds it."""
    answers: list[dict[str, Any]] = []
    for config in configs:

        async def go(config: Config = config) -> list[dict[str, Any]]:
            async with assemble(config, ledger=Ledger.in_memory(store_identity="find")) as parts:
                rows = await parts.client.cdrs_by_call_id(args.sip_call_id)
                catalog = Catalog(parts.store, config.storage.prefix, config.source.tz)
                out = []
                for row in rows:
                    cdr = parse_row(row, config.source.tz)
                    day = cdr.start_local.date() if cdr.start_local else cdr.salvaged_day
                    near = [day, day - timedelta(days=1)] if day else []
                    files = await catalog.locate(cdr.call_id, near=near)
                    current = (
                        dayfiles.CallEntry.from_sidecar(cdr.call_id, await parts.store.read(files.current_key))
                        if files
                        else None
                    )
                    out.append(
                        {
                            "sip_call_id": args.sip_call_id,
                            "call_id": cdr.call_id,
                            "start_local": cdr.start_local.isoformat() if cdr.start_local else None,
                            "source": cdr.raw.get("source") if isinstance(cdr.raw, dict) else None,
                            "destination": cdr.raw.get("destination") if isinstance(cdr.raw, dict) else None,
                            "archived": files is not None,
                            "day": files.day.isoformat() if files else None,
                            "sidecar_key": files.current_key if files else None,
                            "recording_status": current.recording_status if current else None,
                            "recording_key": current.recording_key if current else None,
                            **({"source_name": config.name} if config.name else {}),
                        }
                    )
                return out

        answers += anyio.run(go)
    if args.json:
        print(json.dumps(answers, indent=2))
    elif not answers:
        print(f"the PBX knows no call with SIP Call-ID {args.sip_call_id}")
    for answer in [] if args.json else answers:
        if answer["archived"]:
            print(
                f"SIP Call-ID {answer['sip_call_id']}: call {answer['call_id']} of {answer['start_local']}, "
                f"archived: {answer['sidecar_key']} (recording {answer['recording_status']}"
                + (f", {answer['recording_key']})" if answer["recording_key"] else ")")
            )
        else:
            print(
                f"SIP Call-ID {answer['sip_call_id']}: call {answer['call_id']} of {answer['start_local']} "
                "is NOT in the archive"
            )
    return EXIT_OK if answers and all(a["archived"] for a in answers) else EXIT_FAILED


# -- show -------------------------------------------------------------------------------------


async def _locate_all(config: Config, store: Store, call_ids: list[str]) -> list[CallFiles]:
    catalog = Catalog(store, config.storage.prefix, config.source.tz, concurrency=config.download.concurrency)
    found = []
    for call_id in call_ids:
        try:
            files = await catalog.locate(call_id.strip().lower())
        except ValueError as exc:
            raise ConfigError([f"At 'CALL_ID': {exc}"], source="the command line") from None
        if files is None:
            raise ArchiverError(f"no call {call_id} in {store.description}")
        found.append(files)
    return found


def only_config(configs: tuple[Config, ...]) -> Config:
    if len(configs) > 1:
        names = ", ".join(c.name or "" for c in configs)
        raise ConfigError(
            [f"At '--source': this command reads one source's archive; pick one of {names}"], source="the command line"
        )
    return configs[0]


def show(args: argparse.Namespace) -> int:
    config = only_config(setup(args, quiet=True, read_only=True))

    why_not = ""

    async def go() -> Evidence:
        nonlocal why_not
        store = make_store(config)
        keys = make_key_store(config)
        try:
            reader, why_not = decrypter(config, keys, why="to check the audio of encrypted recordings")
            [files] = await _locate_all(config, store, [args.call_id])
            chain = await read_chain(store, config.storage.prefix, concurrency=config.download.concurrency)
            evidence = await examine(store, files, chain, decrypter=reader)
            await _tell_trail(config, store, "show", [files.call_id])
            return evidence
        finally:
            await store.aclose()
            if keys is not None:
                await keys.aclose()

    evidence = anyio.run(go)
    if args.json:
        print(json.dumps(evidence.as_dict(), indent=2, ensure_ascii=False))
    else:
        print_evidence(evidence, sys.stdout, restore_hint=_restore_hint(args, [evidence.call_id]), why_not=why_not)
    return EXIT_OK if evidence.verified else EXIT_FAILED


def _restore_hint(args: argparse.Namespace, call_ids: list[str]) -> str:
    return f"`archiver restore -c {args.config} {' '.join(call_ids)}` brings it back"


async def _tell_trail(config: Config, store: Store, action: str, call_ids: list[str]) -> None:
    """Add the command's reads to the access trail, under the OS user who ran it."""
    trail = AccessTrail(store, config.storage.prefix, SystemClock())
    for call_id in call_ids:
        trail.record(user=os_user(), action=action, call_id=call_id, remote=socket.gethostname(), via=action)
    await trail.flush()


def print_evidence(
    evidence: Evidence,
    out: TextIO,
    *,
    restore_hint: str = "`archiver restore` brings it back",
    why_not: str = "storage.encryption.identity_file is not set",
) -> None:
    e = evidence.entry
    current = evidence.current
    revision = current.revision if current else "?"
    print(f"call {evidence.call_id}  (day {evidence.day}, current record: revision {revision})", file=out)
    if e is not None:
        seconds = "" if e.duration_seconds is None else f", {e.duration_seconds:g} s"
        print(
            f"  {e.start}  {e.direction or ''}  from {e.source}  to {e.destination}{seconds}  {e.hangup_cause or ''}",
            file=out,
        )
    for r in evidence.records:
        extra = "".join(
            f"  {label}: {value}"
            for label, value in (
                ("reason", r.reason),
                ("supersedes", r.supersedes),
                ("supersedes call", r.supersedes_call),
                ("superseded by", r.superseded_by),
            )
            if value
        )
        print(
            f"  record {r.revision}  {r.key}  sha256 {r.sha256}  {r.status}  archived {r.archived_at}{extra}", file=out
        )
    for rec in evidence.recordings:
        verdict = "OK, its bytes match its record" if rec.ok else "MISMATCH with its record"
        print(f"  recording {rec.key}  {rec.size} bytes  sha256 {rec.sha256}  {verdict}", file=out)
        if rec.plaintext is not None:
            print(f"    encrypted (age); decrypts to {rec.plaintext[0]} bytes, sha256 {rec.plaintext[1]}", file=out)
        elif rec.key in evidence.not_decrypted:
            print(f"    encrypted (age); its audio was not decrypted: {why_not}", file=out)
    for key in evidence.cold:
        print(f"  recording {key}  in cold storage: not read now; {restore_hint}", file=out)
    if evidence.erased is not None:
        erased = evidence.erased
        print(f"  ERASED on {erased.get('erased_at')}: {erased.get('reason')}", file=out)
        for item in erased.get("removed") or []:
            if isinstance(item, dict):
                print(f"    removed {item.get('key')}  {item.get('size')} bytes  sha256 {item.get('sha256')}", file=out)
        for item in erased.get("crypto_shredded") or []:
            if isinstance(item, dict):
                print(
                    f"    crypto-shredded {item.get('key')}  {item.get('size')} bytes  sha256 {item.get('sha256')}: "
                    "its key destroyed; the recording stays, unreadable",
                    file=out,
                )
    manifests: dict[str, list[str]] = {}
    for line in evidence.manifest_lines:
        manifests.setdefault(line.manifest, []).append(line.name)
    for line in {m.manifest: m for m in evidence.manifest_lines}.values():
        sealed = f"sealed by seal {', '.join(map(str, line.sealed_by))}" if line.sealed_by else "NOT SEALED"
        names = ", ".join(manifests[line.manifest])
        print(f"  manifest {line.manifest} (sha256 {line.manifest_sha256}) lists {names}; {sealed}", file=out)
    if evidence.not_in_a_manifest:
        print(
            f"  not yet in a manifest (the day's next set lists them): {', '.join(evidence.not_in_a_manifest)}",
            file=out,
        )
    if evidence.seal_head is not None:
        print(f"  seal chain head: {evidence.seal_head.key} sha256 {evidence.seal_head.sha256}", file=out)
    for problem in evidence.problems:
        print(f"PROBLEM  {problem}", file=out)
    if not evidence.ok:
        print(f"NOT verified: {len(evidence.problems)} problem(s)", file=out)
    elif evidence.cold:
        print(f"NOT fully verified: {len(evidence.cold)} recording(s) in cold storage; {restore_hint}", file=out)
    else:
        print("verified: every stored byte matches its record", file=out)


# -- export -----------------------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    config = only_config(setup(args, quiet=True, read_only=True))
    out: Path = args.out
    if out.suffix.lower() != ".zip":
        raise ConfigError(
            [f"At '--out': the bundle is a zip file; name it *.zip (got {out})"], source="the command line"
        )
    if not out.parent.is_dir():
        raise ConfigError([f"At '--out': no folder {out.parent}"], source="the command line")

    async def go(f: IO[bytes]) -> list[Evidence]:
        store = make_store(config)
        keys = make_key_store(config)
        try:
            reader, why_not = decrypter(config, keys, why="to export the audio of encrypted recordings")
            calls = await _locate_all(config, store, list(dict.fromkeys(args.call_ids)))
            chain = await read_chain(store, config.storage.prefix, concurrency=config.download.concurrency)
            evidence = await bundle.export(
                store, config.storage.prefix, calls, chain, f, decrypter=reader, why_not=why_not
            )
            await _tell_trail(config, store, "export", [c.call_id for c in calls])
            return evidence
        finally:
            await store.aclose()
            if keys is not None:
                await keys.aclose()

    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                evidence = anyio.run(go, f)
            except ObjectInColdStorage as exc:
                raise ArchiverError(
                    f"{exc}; {_restore_hint(args, list(dict.fromkeys(args.call_ids)))}, then export again "
                    f"(nothing was written to {out})"
                ) from None
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(out)  # a bundle is whole, or not there
    finally:
        Path(tmp).unlink(missing_ok=True)
    size = out.stat().st_size
    for e in evidence:
        verdict = "verified" if e.ok else f"NOT verified: {'; '.join(e.problems)}"
        print(f"{e.call_id}  ({e.day}): {verdict}")
    print(f"wrote {out} ({size} bytes, {len(evidence)} call(s)); `unzip` it and run `sha256sum -c SHA256SUMS`")
    return EXIT_OK if all(e.ok for e in evidence) else EXIT_FAILED
