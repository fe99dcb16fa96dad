"""What ``archiver expire`` costs per expired day, against deleting the same versions one by one.

Both remove every version of the same days from a versioned bucket on the same moto server,
through the same kind of boto3 client; the baseline is what a script without batching does
(list the day's versions, one ``DeleteObject`` per version, eight at a time). The archiver also
lists each day, reads its manifests, and appends one seal recording the expiry before it
deletes anything. Figures: S3 requests per day, and the client's own CPU per version removed
(moto runs in its own process, so its CPU is not counted). Runs are interleaved; medians.

    .venv/bin/python -m benchmarks.expiry [--days 10] [--calls 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio

from archiver.archive.seal import Sealer
from archiver.core import keys, seal
from archiver.lifecycle.expire import Expirer
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from tests.helpers import TZ, Bucket, FakeClock, MotoServer, make_bucket, s3_client

FIRST = date(2019, 1, 1)
NOW = datetime(2026, 12, 3, tzinfo=UTC)
PREFIX = "archive"


def populate(bucket: Bucket, days: int, calls: int) -> int:
    """*days* days of *calls* calls (sidecar and a small recording each) and their day files, the
    manifests sealed; the number of objects written."""
    client, written = bucket.client, 0
    manifests: dict[str, str] = {}

    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=bucket.name, Key=key, Body=body)

    with ThreadPoolExecutor(8) as pool:
        for n in range(days):
            folder = keys.day_prefix(PREFIX, FIRST + timedelta(days=n))
            lines = []
            for i in range(calls):
                call = f"{n:08x}-0000-4000-8000-{i:012x}"
                sidecar, audio = json.dumps({"call_id": call}).encode(), b"RIFF" + bytes(2000)
                pool.submit(put, f"{folder}{call}.json", sidecar)
                pool.submit(put, f"{folder}{call}.wav", audio)
                lines += [(f"{call}.json", sidecar), (f"{call}.wav", audio)]
            manifest = "".join(f"{hashlib.sha256(b).hexdigest()}  {name}\n" for name, b in sorted(lines)).encode()
            for name, body in (
                ("calls.csv", b"call_id\r\n"),
                ("index.html", b"<html>"),
                ("manifest-sha256.txt", manifest),
            ):
                pool.submit(put, folder + name, body)
            manifests[folder + "manifest-sha256.txt"] = hashlib.sha256(manifest).hexdigest()
            written += 2 * calls + 3
    first = seal.Seal.new(1, manifests, None, NOW - timedelta(days=1000)).to_bytes()
    put(seal.seal_key(PREFIX, 1), first)
    return written


def counting_client(endpoint: str) -> tuple[Any, Counter[str]]:
    client = s3_client(endpoint, max_pool_connections=16)
    requests: Counter[str] = Counter()
    client.meta.events.register("before-call.s3.*", lambda model, **_: requests.update([model.name]))
    return client, requests


def archiver_expire(bucket: Bucket, keep: timedelta) -> tuple[float, float, Counter[str]]:
    client, requests = counting_client(bucket.endpoint)
    store = S3Store(S3Bucket(client, bucket.name, endpoint=bucket.endpoint))
    clock = FakeClock(NOW)
    expirer = Expirer(
        store, PREFIX, tz=TZ, keep=keep, policy=f"{keep.days}d", clock=clock, sealer=Sealer(store, PREFIX, clock)
    )
    began, cpu = time.monotonic(), time.process_time()
    report = anyio.run(expirer.run)
    cpu, seconds = time.process_time() - cpu, time.monotonic() - began
    assert not report.held
    return seconds, cpu, requests


def one_by_one(bucket: Bucket, days: int) -> tuple[float, float, Counter[str]]:
    client, requests = counting_client(bucket.endpoint)
    began, cpu = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(8) as pool:
        for n in range(days):
            folder = keys.day_prefix(PREFIX, FIRST + timedelta(days=n))
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket.name, Prefix=folder):
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    pool.submit(client.delete_object, Bucket=bucket.name, Key=item["Key"], VersionId=item["VersionId"])
    return time.monotonic() - began, time.process_time() - cpu, requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    keep = NOW.date() - FIRST - timedelta(days=args.days)  # exactly the populated days expire
    server = MotoServer()
    server.start()
    figures: dict[str, list[tuple[float, float, int, int]]] = {
        "archiver expire": [],
        "one DeleteObject per version": [],
    }
    try:
        for _ in range(args.runs):
            for name, runs in figures.items():
                bucket = make_bucket(server.endpoint)
                objects = populate(bucket, args.days, args.calls)
                if name == "archiver expire":
                    seconds, cpu, requests = archiver_expire(bucket, keep)
                else:
                    seconds, cpu, requests = one_by_one(bucket, args.days)
                left = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=f"{PREFIX}/2019/")
                assert not left.get("Versions"), f"{name} left versions"
                runs.append((seconds, cpu, sum(requests.values()), objects))
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):  # moto, busy with the last deletes, may be slow to go
            server.stop()
    print(f"{args.days} days of {args.calls} calls ({2 * args.calls + 3} objects a day), medians of {args.runs}:")
    print("| how | requests per day | client CPU ms per version | seconds |")
    print("|---|---|---|---|")
    base = statistics.median(cpu for _, cpu, _, _ in figures["one DeleteObject per version"])
    for name, runs in figures.items():
        wall = statistics.median(r[0] for r in runs)
        used = statistics.median(r[1] for r in runs)
        asked = statistics.median(r[2] for r in runs)
        print(f"| {name} | {asked / args.days:.0f} | {1000 * used / runs[0][3]:.2f} | {wall:.1f} |")
    ours = statistics.median(cpu for _, cpu, _, _ in figures["archiver expire"])
    print(f"archiver expire's CPU: {ours / base:.2f}x the one-by-one baseline's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
