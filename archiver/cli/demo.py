"""``archiver demo``: the simulator, a two-day backfill into a local folder, and a tour of it;
then the same days archived encrypted (``storage.encryption``), read back, and one call erased by
destroying its key.

Needs no credentials and no network beyond loopback. Running it again writes nothing new,
which is the point it ends on.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TextIO

import anyio
import yaml

from archiver.archive.seal import Sealer
from archiver.audit.catalog import Catalog
from archiver.audit.verify import Verifier
from archiver.cli.demo_encrypted import encrypted_config, encrypted_tour
from archiver.cli.output import print_report
from archiver.compose import assemble
from archiver.compose.stores import make_store
from archiver.config.load import parse_config
from archiver.config.models import Config
from archiver.core.clock import SystemClock
from archiver.core.quantities import format_size
from archiver.core.report import RunReport
from archiver.lifecycle.erase import Eraser
from archiver.lifecycle.expire import Expirer
from archiver.service import logs
from archiver.simulator import Dataset, Simulator

TIMEZONE = "Asia/Ho_Chi_Minh"


def run_demo(directory: Path, out: TextIO) -> int:
    """Archive the last two full days of a simulated PBX into *directory*; 0 when all is done."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / "archive"
    logs.configure(level="warning")
    dataset = Dataset(seed=2026, calls_per_day=120, max_duration=30)
    with Simulator(dataset) as sim:
        raw = {
            "source": {
                "base_url": sim.url,
                "api_key": sim.api_key,
                "api_secret": sim.api_secret,
                "timezone": TIMEZONE,
                "page_size": 50,
            },
            "storage": {"url": f"file://{archive}"},
            "download": {"concurrency": 8},
            "state": {"path": str(directory / "ledger.sqlite3")},
            "retention": {"keep": "1d"},  # a day, so that the demo can show `archiver expire`
        }
        (directory / "config.yaml").write_text(
            "# The configuration the demo ran with (the simulator's port changes each run; retention\n"
            "# keeps a day so that the demo shows expire: a real archive keeps years, such as 2557d).\n"
            + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
        config = parse_config(raw, environ={})
        tz = config.source.tz
        today = datetime.combine(datetime.now(tz).date(), dtime(0), tz)
        since, until = today - timedelta(days=2), today

        async def backfill() -> RunReport:
            async with assemble(config) as parts:
                return await parts.archiver.backfill(since, until)

        second_day = since + timedelta(days=1)
        print(
            f"ccall simulator on {sim.url}; archiving {since:%Y-%m-%d} and {second_day:%Y-%m-%d} into {archive}",
            file=out,
        )
        began = time.monotonic()
        first = anyio.run(backfill)
        took = time.monotonic() - began
        print_report(first, out)
        print(f"first pass: {first.done} calls in {took:.1f} s", file=out)
        second = anyio.run(backfill)
        print(
            f"second pass: {second.done} calls written, {second.skipped} already archived (nothing is written twice)",
            file=out,
        )
        sealed = encrypted_config(directory, raw)
        encrypted = anyio.run(_backfill, sealed, since, until)

    _tour(archive, out)
    aged = anyio.run(_years_later, config, since, out)
    shredded = anyio.run(encrypted_tour, sealed, directory, out) and encrypted.complete
    ok = first.complete and second.complete and second.done == 0 and aged and shredded
    print("demo ok" if ok else "demo FAILED: see above", file=out)
    return 0 if ok else 1


async def _backfill(config: Config, since: datetime, until: datetime) -> RunReport:
    async with assemble(config) as parts:
        return await parts.archiver.backfill(since, until)


async def _years_later(config: Config, since: datetime, out: TextIO) -> bool:
    """Erase one call on request and expire the older day, then verify: both are accounted for."""
    clock = SystemClock()
    tz, prefix = config.source.tz, config.storage.prefix
    store = make_store(config)
    try:
        catalog = Catalog(store, prefix, tz)
        kept_day = (since + timedelta(days=1)).date()
        recorded = [f.entry for f in await catalog.day_calls(kept_day) if f.entry.recording_status == "archived"]
        call = recorded[-1]  # the tour's sample is the day's first
        erased = await Eraser(store, prefix, tz=tz, clock=clock).erase(
            call.call_id, "demo: a data subject's request, ref. DSR-0001", bypass_governance=False, dry_run=False
        )
        keep, policy = config.retention.keep or timedelta(days=1), config.retention.policy or "1d"
        sealer = Sealer(store, prefix, clock, timezone=tz.key)
        expired = await Expirer(store, prefix, tz=tz, keep=keep, policy=policy, clock=clock, sealer=sealer).run()
        audit = await Verifier(store, prefix, clock=clock).verify(None)
    finally:
        await store.aclose()
    config_file = store.description.removeprefix("file://").rsplit("/", 1)[0] + "/config.yaml"
    print("\nyears later, on request and under retention (the same as these commands):", file=out)
    print(f"  archiver erase -c {config_file} {call.call_id} --reason '…'", file=out)
    print(
        f"    the recording is gone ({len(erased.removed)} object, every version); {erased.revision_key} "
        "records why, when, and its size and SHA-256",
        file=out,
    )
    print(f"  archiver expire -c {config_file}      # retention.keep: {policy}", file=out)
    for day in expired.days:
        print(f"    {day.day.isoformat()}: expiry recorded in the seal chain, {day.removed} objects removed", file=out)
    print(f"  archiver verify -c {config_file}", file=out)
    counted = ", ".join(f"{n} day(s) expired under retention {p}" for p, n in audit.expired.items())
    erasures = f"{audit.erased} call(s) erased on request"
    print(f"    {len(audit.problems)} problem(s); {erasures}; {counted or 'no day expired'}", file=out)
    return not audit.problems and audit.erased == 1 and sum(audit.expired.values()) == 1


def _tour(archive: Path, out: TextIO) -> None:
    days: Counter[str] = Counter()
    sizes = 0
    sample: Path | None = None
    for path in sorted(archive.rglob("*")):
        if path.is_file():
            day = "/".join(path.relative_to(archive).parts[:-1])
            days[f"{day} {path.suffix}"] += 1
            sizes += path.stat().st_size
            if path.suffix == ".wav" and (sample is None or sample.parent != path.parent):
                sample = path.with_suffix(".json")  # the first of the last day: expire keeps that day
    print(f"\nthe archive ({format_size(sizes)}):", file=out)
    for key, count in sorted(days.items()):
        print(f"  {archive}/{key.split()[0]}/  {count} {key.split()[1]} files", file=out)
    if sample is not None:
        doc = json.loads(sample.read_text(encoding="utf-8"))
        rec = doc["recording"]
        print(f"\na sidecar, {sample}:", file=out)
        print(
            f"  call {doc['call_id']} at {doc['call']['start_local']}, {doc['call']['direction']}, "
            f"{doc['cdr'].get('cid_name')!s}, {doc['call']['duration_seconds']:.0f} s",
            file=out,
        )
        print(f"  recording {rec['key']} {rec['size']} bytes sha256 {rec['sha256']}", file=out)
        print(f"  check it by hand: sha256sum {archive / rec['key']}", file=out)
        folder = sample.parent
        if (folder / "manifest-sha256.txt").exists():
            print(f"\nthe day, for auditors: open {folder / 'index.html'} in a browser (a player per call),", file=out)
            print(f"  or check it all: cd {folder} && sha256sum -c manifest-sha256.txt", file=out)
        config = archive.parent / "config.yaml"
        print("\nas an auditor (these read the archive only):", file=out)
        print(f"  archiver find -c {config} --number '{_international(doc['cdr'].get('source'))}'", file=out)
        print(f"  archiver show -c {config} {doc['call_id']}", file=out)
        print(f"  archiver export -c {config} {doc['call_id']} --out evidence.zip", file=out)
        print(f"  archiver browse -c {config}      # then open http://127.0.0.1:8080/", file=out)


def _international(number: object) -> str:
    """A national number (0986…) as an auditor may be given it: +84 986…"""
    text = str(number or "")
    return f"+84 {text[1:]}" if text.startswith("0") and text[1:].isdigit() else text
