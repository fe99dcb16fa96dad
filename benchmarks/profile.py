"""Where the archiver's own CPU goes, by kind of request, on a backfill of short recordings.

One backfill of 240 calls of short recordings (1 s to 6 s), the archiver installed as an
operator installs it, run under py-spy sampling every thread that is running (not waiting) at
500 Hz without stopping the process (``--nonblocking``): the samples add up to its CPU time. Each sample is put under the request or step it belongs to (the S3 operation in a
worker thread, the download or the API page on the event loop, handing work to and from the
threads, start-up), and the table gives each one's share and its CPU per stored object.

    .venv/bin/pip install py-spy
    .venv/bin/python -m benchmarks.profile [--runs 3] [--install-from CHECKOUT]

Needs py-spy (from PyPI) and permission to trace a child process (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import yaml

from archiver.simulator import Simulator
from benchmarks.throughput import DAY, install, short_dataset_for, timed
from tests.helpers import AWS_ENV, Bucket, MotoServer, make_bucket

# (what a stack frame says, the kind of work it is), first match wins; innermost archiver frames
# are matched before outer ones (see classify).
KINDS = (
    ("s3_client (archiver/compose/stores.py", "start-up: making the S3 client"),
    ("S3Store.put.<locals>.put ", "S3 PutObject (recordings, sidecars, day files, seals)"),
    ("S3Store._upload_part", "S3 UploadPart"),
    ("S3ControlStore._put", "S3 PutObject (control: claims, leases)"),
    ("read_with_etag.<locals>.read", "S3 GetObject (control)"),
    ("S3Bucket._pages", "S3 ListObjectsV2"),
    ("S3Bucket._list_versions", "S3 ListObjectVersions"),
    ("get_bucket_versioning", "S3 GetBucketVersioning"),
    ("S3Store.head.<locals>.head", "S3 HeadObject"),
    ("S3Store.read.<locals>.read", "S3 GetObject"),
    ("Fetcher._fetch_once", "recording download (httpx, SHA-256, checks)"),
    ("Fetcher.", "recording download (httpx, SHA-256, checks)"),
    ("CcallClient.", "CDR API pages (httpx, JSON)"),
    ("anyio/to_thread.py", "handing work to and from worker threads"),
    ("anyio/_backends/_asyncio.py:run_sync_in_worker_thread", "handing work to and from worker threads"),
    ("Ledger", "ledger (SQLite)"),
    ("state/", "ledger (SQLite)"),
    ("DayCloser", "day files"),
    ("Sealer", "the seal"),
    ("structlog", "log lines"),
    ("cdr.py", "CDR parsing"),
    ("sidecar.py", "sidecar documents"),
)
STARTUP = "start-up: imports, configuration, preflight"
ENV = {k: v for k, v in {**os.environ, **AWS_ENV}.items() if k != "PYTHONDONTWRITEBYTECODE"}


def classify(frames: list[str]) -> str:
    """The kind of work a stack (outermost frame first) was doing."""
    if any("_find_and_load" in f for f in frames):
        return STARTUP
    for frame in reversed(frames):
        for marker, kind in KINDS:
            if marker in frame:
                return kind
    if any("asyncio" in f for f in frames):
        return "the event loop and call logic"
    return STARTUP


def backfill_argv(python: str, moto: MotoServer, sim: Simulator, folder: Path) -> tuple[list[str], Bucket]:
    """A backfill of DAY into a new bucket, from a new ledger: its command line, and the bucket."""
    bucket = make_bucket(moto.endpoint)
    config = folder / "config.yaml"
    ledger = folder / "ledger.sqlite3"
    ledger.unlink(missing_ok=True)
    config.write_text(
        yaml.safe_dump(
            {
                "source": {"base_url": sim.url, "api_key": sim.api_key, "api_secret": sim.api_secret, "page_size": 500},
                "storage": {"url": f"s3://{bucket.name}/archive", "endpoint_url": moto.endpoint},
                "download": {"concurrency": 8, "spool_dir": str(folder)},
                "state": {"path": str(ledger)},
            }
        )
    )
    argv = [python, "-m", "archiver", "--log-level", "info", "--log-format", "json", "backfill", "-c", str(config)]
    return [*argv, "--since", DAY.isoformat(), "--until", (DAY + timedelta(days=1)).isoformat()], bucket


def profile(
    spy: str, python: str, moto: MotoServer, sim: Simulator, folder: Path
) -> tuple[collections.Counter[str], int]:
    """Samples by kind of one backfill of DAY, and the objects it stored."""
    argv, bucket = backfill_argv(python, moto, sim, folder)
    raw = folder / "samples.txt"
    record = [spy, "record", "--nonblocking", "--rate", "500", "--format", "raw", "--output", str(raw), "--", *argv]
    subprocess.run(
        record, env=ENV, check=True, capture_output=True, cwd=folder
    )  # not a checkout: the installation's code
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack:
            counts[classify(stack.split(";"))] += int(n)
    objects = len([k for k in bucket.objects("archive/") if "/_archiver/" not in k])
    return counts, objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--install-from", type=Path, help="a checkout to profile (default: this one)")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    moto = MotoServer()
    moto.start()
    try:
        with tempfile.TemporaryDirectory(prefix="profile-") as tmp, Simulator(short_dataset_for(240)) as sim:
            python = install(Path(tmp), args.install_from)
            total: collections.Counter[str] = collections.Counter()
            cpu: list[float] = []
            objects = 0
            for _ in range(args.runs):
                counts, objects = profile(spy, python, moto, sim, Path(tmp))
                total += counts
                cpu.append(timed(backfill_argv(python, moto, sim, Path(tmp))[0], ENV)[1])  # without the profiler
    finally:
        moto.stop()
    samples = sum(total.values())
    per_object = statistics.median(cpu) / objects * 1000  # measured without the profiler, which slows what it samples
    print(f"{args.runs} backfills of {objects} objects; {samples} samples at 500 Hz of the threads running.")
    print("Each share is the profile's; its milliseconds are that share of the CPU of the same backfill run")
    print(f"without the profiler (median {statistics.median(cpu):.2f} s).\n")
    print("| where the CPU went | share | CPU ms per stored object |\n|---|---|---|")
    for kind, n in total.most_common():
        print(f"| {kind} | {100 * n / samples:.1f} % | {per_object * n / samples:.2f} |")
    print(f"| all | 100 % | {per_object:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
