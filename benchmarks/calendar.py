"""How long ``/days`` (the calendar) takes against the number of days in the archive.

Generates folder archives of 365, 1,825 and 3,650 days, each day as the archiver leaves it once
closed: CALLS sidecars (hard links to one file a day: the calendar lists them, never reads them),
``calls.csv`` and ``manifest-sha256.txt`` (made by the archiver's own day-file code, with a mix
of outcomes), and a seal per day in one chain; one day in fifty is left open (no day files), as
a day still being archived is. Then runs ``archiver browse`` on each as an operator does (a
subprocess, over real HTTP) and times:

- the first ``/days`` after start: every day's summary read (the cold cost, paid once per start);
- ``/days`` again (warm, median of RUNS): what every later visit costs;
- ``/`` (the search form, median of RUNS): the baseline of the same server in the same run.

    .venv/bin/python -m benchmarks.calendar [--calls 100] [--runs 5] [--days 365,1825,3650]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from archiver.core import dayfiles, keys, seal
from archiver.core.dayfiles import CallEntry

LAST_DAY = date(2026, 11, 30)
OUTCOMES = ("archived",) * 14 + ("none", "none", "none", "erased")
TROUBLE = ("missing", "rejected")  # a day in seven has a recording given up on, or refused


def generate(root: Path, days: int, calls: int) -> None:
    """*days* days up to LAST_DAY, each with *calls* calls, sealed one seal a day."""
    root.mkdir(parents=True)
    previous: seal.Link | None = None
    sequence = 0
    (root / "seals").mkdir()
    for n in range(days):
        day = LAST_DAY - timedelta(days=days - 1 - n)
        folder = root / keys.day_prefix("", day)
        folder.mkdir(parents=True)
        entries = []
        blank = folder / f"{n:08x}-0000-4000-8000-{0:012x}.json"
        blank.write_bytes(b"{}")
        for i in range(calls):
            call_id = f"{n:08x}-0000-4000-8000-{i:012x}"
            if i:
                os.link(blank, folder / f"{call_id}.json")
            status = OUTCOMES[(n + i) % len(OUTCOMES)]
            if n % 7 == 3 and i < 2:
                status = TROUBLE[i]
            entries.append(
                CallEntry(
                    call_id=call_id,
                    sidecar_sha256=hashlib.sha256(call_id.encode()).hexdigest(),
                    start_local=f"{day.isoformat()}T{i % 24:02d}:00:00+07:00",
                    direction="inbound",
                    source=f"09{n % 100:02d}{i:06d}",
                    destination=str(100 + i % 30),
                    duration_seconds=float(i % 90),
                    recording_status=status,
                    recording_key=f"{keys.day_prefix('', day)}{call_id}.wav" if status == "archived" else None,
                    size=16044 if status == "archived" else None,
                    sha256=hashlib.sha256(call_id.encode()).hexdigest() if status == "archived" else None,
                )
            )
        if n % 50 == 49:
            continue  # open: not closed yet
        manifest = dayfiles.manifest(entries)
        (folder / "manifest-sha256.txt").write_bytes(manifest)
        (folder / "calls.csv").write_bytes(dayfiles.calls_csv(entries))
        sequence += 1
        key = f"{keys.day_prefix('', day)}manifest-sha256.txt"
        raw = seal.Seal.new(
            sequence,
            {key: hashlib.sha256(manifest).hexdigest()},
            previous,
            datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
        ).to_bytes()
        (root / seal.seal_key("", sequence)).write_bytes(raw)
        previous = seal.Link(seal.seal_key("", sequence), hashlib.sha256(raw).hexdigest())


def measure(root: Path, runs: int) -> dict[str, float]:
    """Start browse on *root*; the first /days, then medians of /days and / (seconds), and bytes."""
    config = root.parent / f"{root.name}.yaml"
    config.write_text(yaml.safe_dump({"storage": {"url": f"file://{root}"}}))
    began = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archiver",
            "--log-level",
            "warning",
            "browse",
            "-c",
            str(config),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"http://\S+", process.stdout.readline())
        assert found, "browse did not start"
        url = found.group(0)
        with httpx.Client(base_url=url, timeout=600) as client:
            started = time.monotonic() - began
            t0 = time.monotonic()
            first = client.get("/days")
            first.raise_for_status()
            cold = time.monotonic() - t0
            warm, search = [], []
            for _ in range(runs):
                t0 = time.monotonic()
                client.get("/days").raise_for_status()
                warm.append(time.monotonic() - t0)
                t0 = time.monotonic()
                client.get("/").raise_for_status()
                search.append(time.monotonic() - t0)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "start": started,
        "cold": cold,
        "warm": statistics.median(warm),
        "search": statistics.median(search),
        "bytes": len(first.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="calls a day (default 100)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", default="365,1825,3650")
    args = parser.parse_args()
    sizes = [int(d) for d in args.days.split(",")]
    with tempfile.TemporaryDirectory(prefix="calendar-bench-") as folder:
        print(f"{args.calls} calls a day, one day in fifty open; medians of {args.runs}")
        print(
            "| days | generated in s | first /days s (every day read) | /days s (warm) | / s (baseline) | warm / baseline | page KiB |"
        )
        print("|---|---|---|---|---|---|---|")
        for days in sizes:
            root = Path(folder) / f"archive-{days}"
            t0 = time.monotonic()
            generate(root, days, args.calls)
            made = time.monotonic() - t0
            got = measure(root, args.runs)
            print(
                f"| {days} | {made:.1f} | {got['cold']:.2f} | {got['warm']:.3f} | {got['search']:.4f} | "
                f"{got['warm'] / got['search']:.1f}x | {got['bytes'] / 1024:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
