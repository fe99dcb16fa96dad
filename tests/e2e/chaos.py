"""The chaos run: many calls, every fault switched on, S3 outages and repeated ``kill -9``.

The simulator serves a few thousand calls with API faults, broken recording bodies, dead and
forbidden links and malformed rows. The archiver (``archiver backfill`` in a child process) is
killed with SIGKILL at random moments and restarted, once with its ledger deleted, while the
S3 endpoint (a moto server behind a proxy, so its contents survive) goes down now and then.
When a run finally exits 0, the bucket is checked against what the simulator served:

- every served recording is stored byte-identical (SHA-256) under the right key;
- every call has exactly one sidecar, and no audio object lacks its sidecar;
- no object has a second version (nothing was overwritten);
- every recording never served is recorded ``missing`` with the reason, every forbidden link
  ``rejected``.

Run it on its own (full size)::

    .venv/bin/python -m tests.chaos --calls 3000 --kills 10 --outages 3 --seed 1

``tests/test_chaos.py`` runs a smaller one in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import jsonschema

from archiver.audit.verify import Verifier
from archiver.core import dayfiles, seal
from archiver.core.identity import call_id_for_row
from archiver.core.keys import audio_key, sidecar_key
from archiver.simulator import Dataset, Faults, SimCall, Simulator, as_received
from archiver.store.s3 import S3Store
from tests.helpers import (
    Bucket,
    MotoServer,
    ToggleProxy,
    check_sidecar,
    config_dict,
    make_bucket,
    s3_bucket,
    start_archiver,
    write_config,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FIRST_DAY = date(2026, 10, 1)
CHAOS_FAULTS = Faults(
    api_error_rate=0.05,
    api_429_rate=0.02,
    api_html_rate=0.02,
    api_no_response_rate=0.02,
    recording_error_rate=0.05,
    recording_429_rate=0.02,
    recording_cut_rate=0.03,
    recording_truncated_rate=0.03,
    recording_stall_rate=0.01,
    recording_html_rate=0.02,
    stall_seconds=3.0,
    retry_after=0.2,
)


@dataclass
class ChaosResult:
    calls: int = 0
    runs: int = 0
    kills: int = 0
    outages: int = 0
    retries: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        rows = [
            ("calls", self.calls),
            ("runs of the archiver", self.runs),
            ("kill -9", self.kills),
            ("S3 outages", self.outages),
            ("faults injected", sum(self.faults.values())),
            *((f"  {k.removeprefix('fault.')}", v) for k, v in sorted(self.faults.items())),
            ("retries scheduled", self.retries),
            *((f"sidecars: {k}", v) for k, v in sorted(self.outcomes.items())),
            ("problems found", len(self.problems)),
            ("seconds", round(self.seconds, 1)),
        ]
        return "\n".join(f"{name:<28}{value:>8}" for name, value in rows)


def run_chaos(
    *,
    calls: int,
    days: int,
    kills: int,
    outages: int,
    seed: int,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> ChaosResult:
    """Run the whole ordeal in *workdir* and return what happened and what the check found."""
    rng = random.Random(seed)
    result = ChaosResult()
    began = time.monotonic()
    dataset = Dataset(
        seed=seed,
        calls_per_day=max(1, calls // days),
        max_duration=20,
        recording_missing_rate=0.02,
        foreign_link_rate=0.01,
        malformed_rate=0.02,
    )
    moto = MotoServer()
    moto.start()
    proxy = ToggleProxy(moto.port).start()
    try:
        bucket = make_bucket(moto.endpoint)
        faults = Faults(**vars(CHAOS_FAULTS))
        with Simulator(dataset, faults=faults, seed=seed) as sim:
            config = _write_config(workdir, sim, bucket, proxy)
            since, until = FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=days)).isoformat()
            logs = workdir / "archiver.log"
            ledger_lost_at = rng.randrange(kills) if kills else -1
            outage_runs = set(rng.sample(range(kills + 1), min(outages, kills + 1)))
            while True:
                result.runs += 1
                run = result.runs - 1
                if run == ledger_lost_at:
                    (workdir / "ledger.sqlite3").unlink(missing_ok=True)
                    log(f"run {result.runs}: the ledger is deleted")
                timer = None
                if run in outage_runs:
                    timer = _schedule_outage(proxy, rng.uniform(0.5, 3.0), rng.uniform(2.0, 6.0), log)
                    result.outages += 1
                process = start_archiver("backfill", config, "--since", since, "--until", until, log=logs)
                if result.kills < kills:
                    time.sleep(rng.uniform(1.0, 4.0))
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                        process.wait()
                        result.kills += 1
                        log(f"run {result.runs}: kill -9")
                        _join(timer, proxy)
                        continue
                code = process.wait(timeout=900)
                _join(timer, proxy)
                log(f"run {result.runs}: exit {code}")
                if code == 0 and result.kills >= kills:
                    break
                if result.runs > kills + 8:
                    result.problems.append(f"the archiver did not finish after {result.runs} runs (last exit {code})")
                    break
            first, last = (
                datetime.combine(FIRST_DAY, datetime.min.time(), TZ),
                datetime.combine(FIRST_DAY + timedelta(days=days), datetime.min.time(), TZ),
            )
            expected = dataset.calls_between(first, last, sim.now())
            result.calls = len(expected)
            result.faults = Counter({k: v for k, v in sim.stats.items() if k.startswith("fault.")})
            check_archive(bucket, sim, expected, result)
        result.retries = sum('"stamina.retry_scheduled"' in line for line in logs.read_text().splitlines())
    finally:
        proxy.stop()
        moto.stop()
    result.seconds = time.monotonic() - began
    return result


def check_archive(bucket: Bucket, sim: Simulator, calls: list[SimCall], result: ChaosResult) -> None:
    """Compare the bucket with what the simulator served; add every discrepancy to result.problems."""
    pages = list(bucket.client.get_paginator("list_object_versions").paginate(Bucket=bucket.name))  # every page
    versions = [v for page in pages for v in page.get("Versions", [])]
    keys = Counter(v["Key"] for v in versions if not v["Key"].startswith("archive/_archiver/"))
    result.problems += [f"{k} has {n} versions: something was overwritten" for k, n in keys.items() if n > 1]
    result.problems += [
        f"{m['Key']} has a delete marker"
        for page in pages
        for m in page.get("DeleteMarkers", [])
        if not m["Key"].startswith("archive/_archiver/")  # control objects: probes are written and removed
    ]
    objects = {k: v for k, v in bucket.objects().items() if not k.startswith("archive/_archiver/")}  # control objects
    expected_keys: set[str] = set()
    for call in calls:
        received = as_received(call.cdr(sim.url))["Cdr"]
        cid = call.uuid if call.has_recording else call_id_for_row(received)
        key = sidecar_key("archive", call.start.date(), cid)
        expected_keys.add(key)
        if key not in objects:
            result.problems.append(f"call {cid}: no sidecar")
            continue
        doc = json.loads(objects[key])
        try:
            check_sidecar(doc)
        except jsonschema.ValidationError as exc:
            result.problems.append(f"call {cid}: the sidecar breaks the schema: {exc.message}")
        status = doc["recording"]["status"]
        result.outcomes[status] += 1
        if doc["cdr"] != received:
            result.problems.append(f"call {cid}: the sidecar's cdr differs from the row served")
        want = (
            "none"
            if not call.has_recording
            else "rejected"
            if call.foreign_link
            else "missing"
            if call.recording_missing
            else "archived"
        )
        if status != want:
            result.problems.append(
                f"call {cid}: status {status}, expected {want} ({doc['recording'].get('last_error')})"
            )
            continue
        if want == "missing" and doc["recording"]["last_error"]["kind"] != "not_found":
            result.problems.append(f"call {cid}: missing without the reason the link gave")
        if want == "archived":
            akey = audio_key("archive", call.start.date(), cid, "wav")
            expected_keys.add(akey)
            body = sim.dataset.recording_bytes(call)
            digest = hashlib.sha256(body).hexdigest()
            if akey not in objects or hashlib.sha256(objects[akey]).hexdigest() != digest:
                result.problems.append(f"call {cid}: the stored recording is not byte-identical")
            elif doc["recording"]["sha256"] != digest:
                result.problems.append(f"call {cid}: the sidecar's sha256 is wrong")
    day_files = {k for k in objects if dayfiles.set_number(k.rsplit("/", 1)[-1]) is not None}
    seals = {k for k in objects if seal.sequence_of("archive", k) is not None}  # verify checks their chain
    unexplained = set(objects) - expected_keys - day_files - seals
    result.problems += [f"{k}: an object no call explains" for k in sorted(unexplained)]
    if not day_files:
        result.problems.append("no day was closed with a manifest")
    store = S3Store(s3_bucket(bucket.endpoint, bucket.name))
    audit = anyio.run(lambda: Verifier(store, "archive").verify(None, deep=True))
    result.problems += [f"verify: {p}" for p in audit.problems]
    result.problems += [f"verify: {audit.unmanifested} files are in no manifest"] if audit.unmanifested else []


def _write_config(workdir: Path, sim: Simulator, bucket: Bucket, proxy: ToggleProxy) -> Path:
    raw = config_dict(
        api=sim,
        storage=bucket.url,
        state=workdir / "ledger.sqlite3",
        endpoint=proxy.endpoint,
        download={"concurrency": 8, "timeout": "1s"},
    )
    raw["source"]["page_size"] = 50
    return write_config(workdir, raw)


def _schedule_outage(proxy: ToggleProxy, after: float, seconds: float, log: Callable[[str], None]) -> threading.Thread:
    def outage() -> None:
        time.sleep(after)
        proxy.down()
        log(f"S3 down for {seconds:.1f} s")
        time.sleep(seconds)
        proxy.up()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def _join(timer: threading.Thread | None, proxy: ToggleProxy) -> None:
    if timer is not None:
        timer.join()
    proxy.up()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--outages", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        result = run_chaos(
            calls=args.calls,
            days=args.days,
            kills=args.kills,
            outages=args.outages,
            seed=args.seed,
            workdir=Path(workdir),
        )
    print(result.table())
    for problem in result.problems:
        print("PROBLEM", problem)
    return 1 if result.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
