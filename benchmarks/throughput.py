"""What the archiver controls, measured against ``rclone copy`` on the same servers.

Both read the same recordings from the bundled simulator over HTTP (the archiver through the
CDR API, rclone through the simulator's plain ``/files/`` listing) and write them to the same
moto S3 server. The archiver does more: CDR paging, verification, SHA-256, a sidecar per call,
day files and a seal. The headline is its own CPU per object it stores (and per call) against
rclone's CPU per file it copies; wall times are shown too, but on one shared machine they are
decided by moto (one Python process taking every request in turn), not by either client.

rclone runs three ways: with its defaults (a HEAD per file for its size, then one PUT), with
``--http-no-head``, and storing what the archiver's contract stores (each recording and, from
local disk at once, one sidecar-sized object per call). Runs are interleaved so that drift in a
shared machine's load falls on all alike; each figure is a median.

    .venv/bin/python -m benchmarks.throughput                  # CPU per object, start-up, 5 runs each
    .venv/bin/python -m benchmarks.throughput --short          # + 240 calls of short recordings (1 s to 6 s)
    .venv/bin/python -m benchmarks.throughput --baseline DIR   # + the archiver of the checkout in DIR, interleaved
    .venv/bin/python -m benchmarks.throughput --latency        # + 100 ms per response, concurrency 8/16/32
    .venv/bin/python -m benchmarks.throughput --processes      # + one backfill by 1, 2 and 4 processes
    .venv/bin/python -m benchmarks.throughput --memory         # + 500 MiB recordings, + a 1M-call ledger
    .venv/bin/python -m benchmarks.throughput --hosts          # + one backfill shared by 1, 2 and 3 hosts
    .venv/bin/python -m benchmarks.throughput --encryption     # + storage.encryption on against off (with --memory: 500 MiB too)

Needs ``rclone`` (Debian package ``rclone``). The archiver runs as an operator installs it (``pip
install`` into a fresh virtual environment: no development tools, bytecode compiled). Compare
ratios, not seconds: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from archiver.core.encryption import Identity, public
from archiver.simulator import Dataset, Faults, Simulator
from archiver.state.ledger import Ledger
from tests.helpers import AWS_ENV, MotoServer, make_bucket

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = date(2026, 10, 1)


@dataclass
class Measure:
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    bytes: int
    objects: int = 0  # what the tool stored: rclone's files; the archiver's audio, sidecars, day files, seals
    calls: int = 0  # the archiver's calls (rclone: its files)
    server_cpu_seconds: float = 0.0  # what the S3 server spent answering this tool
    # The archiver's recordings per second between its first and last stored: the rate once
    # running, without start-up and wind-down. Not measured for rclone, which HEADs every file
    # in a phase of its own before it copies any.
    steady_per_second: float = float("nan")

    @property
    def cpu_ms_per_object(self) -> float:
        return self.cpu_seconds / self.objects * 1000 if self.objects else float("nan")

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_seconds / self.calls * 1000 if self.calls else float("nan")

    @property
    def mib_per_second(self) -> float:
        return self.bytes / (1 << 20) / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_seconds / (self.bytes / (1 << 30))


# Where the archivers run: never a checkout, whose ``archiver/`` ``python -m`` would import
# before the installation's (every run would then measure the checkout's code, the baseline's too).
AWAY = tempfile.gettempdir()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run *argv*; (wall seconds, CPU seconds, peak RSS MiB, what it wrote to stderr).

    The peak is the process's own high-water mark (VmHWM, read every 20 ms until it exits), not
    ``ru_maxrss``: a child forked from this large process would be charged the parent's pages
    it held for an instant before exec.
    """
    began = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors, cwd=AWAY)
        peak_kib = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_kib = max(peak_kib, _high_water_kib(process.pid))
            time.sleep(0.02)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - began
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"{argv[0]} {argv[1]} failed: {stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024, stderr


def steady_rate(stamps: list[datetime]) -> float:
    """Files per second between the first and the last file stored: the rate once running,
    without the process's start-up and wind-down."""
    stamps = sorted(stamps)
    if len(stamps) < 2 or stamps[-1] == stamps[0]:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]).total_seconds()


def archiver_stamps(log: str) -> list[datetime]:
    """When each recording was archived, from the archiver's JSON log lines."""
    out = []
    for line in log.splitlines():
        if line.startswith("{") and '"call.archived"' in line:
            event = json.loads(line)
            if event.get("status") == "archived":
                out.append(datetime.fromisoformat(event["timestamp"]))
    return out


def _high_water_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Bench:
    """Runs the tools; the archiver with *python*, the interpreter of an installation of it."""

    def __init__(self, workdir: Path, moto: MotoServer, python: str) -> None:
        self.workdir = workdir
        self.moto = moto
        self.python = python
        # As installed: bytecode compiled once (pip compiles at install), not on every start.
        self.env = {k: v for k, v in {**os.environ, **AWS_ENV}.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.runs = 0

    def _config(
        self, folder: Path, sim: Simulator, bucket: str, concurrency: int, ledger: Path, keys: str | None = None
    ) -> Path:
        config = folder / "config.yaml"
        raw: dict[str, dict[str, Any]] = {
            "source": {"base_url": sim.url, "api_key": sim.api_key, "api_secret": sim.api_secret, "page_size": 500},
            "storage": {"url": f"s3://{bucket}/archive", "endpoint_url": self.moto.endpoint},
            "download": {"concurrency": concurrency, "spool_dir": str(folder)},
            "state": {"path": str(ledger)},
        }
        if keys is not None:  # storage.encryption: to two recipients (operations and an escrow), as operators do
            recipients = [public(Identity.generate()), public(Identity.generate())]
            raw["storage"]["encryption"] = {"age_recipients": recipients, "keys_url": f"s3://{keys}/keys"}
        config.write_text(yaml.safe_dump(raw))
        return config

    def archiver(
        self,
        sim: Simulator,
        concurrency: int,
        *,
        ledger: Path | None = None,
        sidecars_to: Path | None = None,
        entry: tuple[str, ...] = ("-m", "archiver"),
        python: str | None = None,
        encrypted: bool = False,
    ) -> Measure:
        """One backfill of DAY; with *sidecars_to*, the sidecars it stored are copied there.
        *entry*: how Python is told to run the archiver; *python*: another installation's;
        *encrypted*: with storage.encryption (its keys in a bucket of their own, counted as stored)."""
        self.runs += 1
        bucket = make_bucket(self.moto.endpoint)
        keys = make_bucket(self.moto.endpoint) if encrypted else None
        folder = self.workdir / f"run{self.runs}"
        folder.mkdir()
        config = self._config(
            folder, sim, bucket.name, concurrency, ledger or folder / "ledger.sqlite3", keys.name if keys else None
        )
        server_before = self.moto.cpu_seconds()
        wall, cpu, rss, log = timed(
            [
                python or self.python,
                *entry,
                "--log-level",
                "info",
                "--log-format",
                "json",
                "backfill",
                "-c",
                str(config),
                "--since",
                DAY.isoformat(),
                "--until",
                (DAY + timedelta(days=1)).isoformat(),
            ],
            self.env,
        )
        server = self.moto.cpu_seconds() - server_before
        objects = {k: v for k, v in bucket.objects("archive/").items() if "/_archiver/" not in k}
        stored = sum(len(v) for k, v in objects.items() if k.endswith((".wav", ".wav.age")))
        calls = sum(1 for k in objects if k.endswith(".json") and "/seals/" not in k and "manifest" not in k)
        if keys is not None:
            objects |= keys.objects("keys/")
        if sidecars_to is not None:
            sidecars_to.mkdir(exist_ok=True)
            for key, data in objects.items():
                if key.endswith(".json") and "/_archiver/" not in key:
                    (sidecars_to / key.rsplit("/", 1)[1]).write_bytes(data)
        return Measure(wall, cpu, rss, stored, len(objects), calls, server, steady_rate(archiver_stamps(log)))

    def backfill_on_hosts(self, sim: Simulator, count: int, since: date, until: date) -> float:
        """Wall seconds until *count* hosts running one backfill together have all exited 0."""
        self.runs += 1
        bucket = make_bucket(self.moto.endpoint)
        processes = []
        began = time.monotonic()
        for host in range(count):
            folder = self.workdir / f"run{self.runs}-host{host}"
            folder.mkdir()
            config = self._config(folder, sim, bucket.name, 4, folder / "ledger.sqlite3")
            argv = [self.python, "-m", "archiver", "--log-level", "warning", "backfill", "-c", str(config)]
            argv += ["--since", since.isoformat(), "--until", until.isoformat()]
            processes.append(
                subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=AWAY)
            )
        for process in processes:
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"a host's backfill failed: {stderr.decode(errors='replace')[-2000:]}")
        seconds = time.monotonic() - began
        archived = [v for v in bucket.versions() if "/_archiver/" not in v["Key"]]
        if len(archived) != len({v["Key"] for v in archived}):
            raise RuntimeError("an object was written twice")
        return seconds

    def backfill_in_processes(self, sim: Simulator, count: int, since: date, until: date) -> tuple[float, float]:
        """(wall seconds, CPU seconds of the command and its workers) of one ``--processes`` backfill."""
        self.runs += 1
        bucket = make_bucket(self.moto.endpoint)
        folder = self.workdir / f"run{self.runs}"
        folder.mkdir()
        config = self._config(folder, sim, bucket.name, 8, folder / "ledger.sqlite3")
        argv = [self.python, "-m", "archiver", "--log-level", "warning", "backfill", "-c", str(config)]
        argv += ["--since", since.isoformat(), "--until", until.isoformat(), "--processes", str(count)]
        wall, cpu, _, _ = timed(argv, self.env)
        archived = [v for v in bucket.versions() if "/_archiver/" not in v["Key"]]
        if len(archived) != len({v["Key"] for v in archived}):
            raise RuntimeError("an object was written twice")
        return wall, cpu

    def rclone(self, sim: Simulator, transfers: int, *, head: bool = True) -> Measure:
        self.runs += 1
        bucket = make_bucket(self.moto.endpoint)
        argv = self._rclone_argv(":http:", bucket.name, "rclone", transfers)
        argv += ["--http-url", f"{sim.url}/files/{DAY.isoformat()}/"]
        if not head:  # no sizes known: every file goes up as a multipart upload of unknown length
            argv.append("--http-no-head")
        server_before = self.moto.cpu_seconds()
        wall, cpu, rss, _ = timed(argv, self._rclone_env())
        server = self.moto.cpu_seconds() - server_before
        copied = bucket.objects("rclone/")
        stored = sum(len(v) for v in copied.values())
        return Measure(wall, cpu, rss, stored, len(copied), len(copied), server)

    def rclone_contract(self, sim: Simulator, transfers: int, sidecars: Path) -> Measure:
        """rclone writing what the archiver's contract writes: each recording (from the
        simulator, as above) and, at the same time from local disk, one sidecar-sized object
        per call (the archiver's own sidecars). Two rclone processes, *transfers* each.

        No client that keeps the contract can store those objects faster than the server
        takes them: this is the floor for the archiver on this server, measured with the
        fastest client at hand.
        """
        self.runs += 1
        bucket = make_bucket(self.moto.endpoint)
        audio = self._rclone_argv(":http:", bucket.name, "rclone", transfers)
        audio += ["--http-url", f"{sim.url}/files/{DAY.isoformat()}/"]
        side = self._rclone_argv(str(sidecars), bucket.name, "rclone-sidecars", transfers)
        script = f"{shlex.join(audio)} & a=$!; {shlex.join(side)} & b=$!; wait $a && wait $b"
        server_before = self.moto.cpu_seconds()
        wall, cpu, _, _ = timed(["sh", "-c", script], self._rclone_env())
        server = self.moto.cpu_seconds() - server_before
        copied = bucket.objects("rclone/")
        stored = sum(len(v) for v in copied.values())
        files = len(copied) + len(bucket.objects("rclone-sidecars/"))
        if files - len(copied) != len(list(sidecars.iterdir())):
            raise RuntimeError("rclone did not copy every sidecar")
        return Measure(wall, cpu, float("nan"), stored, files, files, server)

    def _rclone_env(self) -> dict[str, str]:
        # rclone's S3 client rejects a custom CA bundle on a plain-HTTP endpoint; it needs none here.
        return {k: v for k, v in self.env.items() if k != "AWS_CA_BUNDLE"}

    def _rclone_argv(self, source: str, bucket: str, prefix: str, transfers: int) -> list[str]:
        return [
            "rclone",
            "copy",
            source,
            f":s3:{bucket}/{prefix}",
            "--s3-provider",
            "Other",
            "--s3-endpoint",
            self.moto.endpoint,
            "--s3-region",
            "us-east-1",
            "--s3-access-key-id",
            AWS_ENV["AWS_ACCESS_KEY_ID"],
            "--s3-secret-access-key",
            AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            "--s3-force-path-style",
            "--transfers",
            str(transfers),
            "--checkers",
            str(transfers),
            "--config",
            "/dev/null",
            "-q",
        ]


def median(measures: list[Measure]) -> Measure:
    return Measure(
        statistics.median(m.seconds for m in measures),
        statistics.median(m.cpu_seconds for m in measures),
        statistics.median(m.peak_rss_mib for m in measures),
        measures[0].bytes,
        measures[0].objects,
        measures[0].calls,
        statistics.median(m.server_cpu_seconds for m in measures),
        statistics.median(m.steady_per_second for m in measures),
    )


def _num(value: float, digits: int = 0) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def row(name: str, m: Measure, recordings: int) -> str:
    return (
        f"| {name} | {m.cpu_seconds:.2f} | {m.objects} | {_num(m.cpu_ms_per_object, 2)} | {_num(m.cpu_ms_per_call, 2)} | "
        f"{m.seconds:.2f} | {recordings / m.seconds:.0f} | {_num(m.steady_per_second)} | "
        f"{m.server_cpu_seconds:.2f} | {_num(m.peak_rss_mib)} |"
    )


# rclone storing the objects the archiver's contract stores: each recording and a sidecar per call.
FLOOR = "rclone, recordings + sidecars"

HEADER = (
    "| tool | CPU s | objects stored | CPU ms per object | CPU ms per call (rclone: per file) | seconds "
    "| recordings/s | steady recordings/s | S3 server CPU s | peak RSS MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def day_recordings(sim: Simulator) -> list[int]:
    """The sizes of the recordings of DAY that the simulator serves."""
    calls = sim.dataset.calls_on(DAY)
    return [c.recording_size for c in calls if c.serves_recording]


def dataset_for(recordings: int, seed: int = 5) -> Dataset:
    """About *recordings* recordings of 100 KB to 1 MB (6 s to 62 s of 8 kHz audio) on DAY."""
    data = Dataset(seed=seed, calls_per_day=round(recordings / 0.73), max_duration=62)
    data.calls_on(DAY)
    return data


def short_dataset_for(calls: int, seed: int = 5) -> Dataset:
    """*calls* calls on DAY whose recordings are short: 1 s to 6 s of 8 kHz audio (16 KB to 96 KB),
    where the cost per object, not per byte, decides."""
    data = Dataset(seed=seed, calls_per_day=calls, max_duration=6)
    data.calls_on(DAY)
    return data


def compare(
    bench: Bench,
    sim: Simulator,
    concurrency: int,
    runs: int,
    out: Callable[[str], None],
    baseline: str | None = None,
) -> None:
    """The archiver against rclone (its defaults, --http-no-head, and storing the contract's
    objects), runs interleaved so that drift in a shared machine's load falls on all alike; medians.
    *baseline*: the Python of another installation of the archiver (an earlier commit's), run
    interleaved with the rest, so that a change is measured against what it changed."""
    recordings = len(day_recordings(sim))
    sidecars = bench.workdir / f"sidecars-{bench.runs}"
    runs_of: dict[str, list[Measure]] = {"archiver": [], "rclone": [], "rclone --http-no-head": [], FLOOR: []}
    before: list[Measure] = []
    for _ in range(runs):
        if baseline is not None:
            before.append(bench.archiver(sim, concurrency, python=baseline))
        runs_of["archiver"].append(bench.archiver(sim, concurrency, sidecars_to=sidecars))
        runs_of["rclone"].append(bench.rclone(sim, concurrency))
        runs_of["rclone --http-no-head"].append(bench.rclone(sim, concurrency, head=False))
        runs_of[FLOOR].append(bench.rclone_contract(sim, concurrency, sidecars))
    got = {name: median(measures) for name, measures in runs_of.items()}
    if len({m.bytes for m in got.values()}) != 1:
        raise RuntimeError(f"the copies differ: {', '.join(f'{n} {m.bytes} bytes' for n, m in got.items())}")
    ours, theirs = got["archiver"], got["rclone"]
    out(HEADER)
    out(row(f"archiver (concurrency {concurrency})", ours, recordings))
    if before:
        out(row(f"archiver, baseline (concurrency {concurrency})", median(before), recordings))
    for name in ("rclone", "rclone --http-no-head"):
        out(row(f"{name} copy (--transfers {concurrency})", got[name], recordings))
    out(row(f"{FLOOR} (2 x --transfers {concurrency})", got[FLOOR], recordings))
    ratios = [
        (a.cpu_seconds / a.objects) / (r.cpu_seconds / r.objects)
        for a, r in zip(runs_of["archiver"], runs_of["rclone"], strict=True)
    ]
    out(
        f"\n**CPU per stored object: archiver / rclone per file = "
        f"{ours.cpu_ms_per_object / theirs.cpu_ms_per_object:.2f}x** (medians; paired runs "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x). Per call: "
        f"{ours.cpu_ms_per_call / theirs.cpu_ms_per_call:.2f}x rclone's per file. "
        f"The archiver stored {ours.objects} objects for {ours.calls} calls ({recordings} recordings), "
        f"rclone {theirs.objects} files."
    )
    if before:
        was = median(before)
        paired = [a.cpu_seconds / b.cpu_seconds for a, b in zip(runs_of["archiver"], before, strict=True)]
        out(
            f"Against the baseline: CPU {ours.cpu_seconds / was.cpu_seconds:.2f}x (paired runs {min(paired):.2f}x to "
            f"{max(paired):.2f}x); the baseline's CPU per stored object was "
            f"{was.cpu_ms_per_object / theirs.cpu_ms_per_object:.2f}x rclone's per file."
        )
    out(
        f"Wall time: archiver / rclone {ours.seconds / theirs.seconds:.2f}x, / rclone storing the same objects "
        f"{ours.seconds / got[FLOOR].seconds:.2f}x. The S3 server spent {ours.server_cpu_seconds:.2f} CPU s "
        f"answering the archiver, {theirs.server_cpu_seconds:.2f} s answering rclone's copy."
    )


def startup(bench: Bench, runs: int, out: Callable[[str], None]) -> None:
    """The CPU of a one-day backfill of a day without calls (the cost of starting, checking the
    store and ending), against a Python that only imports the libraries a backfill loads and
    makes its one boto3 client."""
    with Simulator(Dataset(seed=1, calls_per_day=0)) as empty:
        ours, floor, bare = [], [], []
        for _ in range(runs):
            ours.append(bench.archiver(empty, 8).cpu_seconds)
            floor.append(timed([bench.python, "-c", FLOOR_SCRIPT], bench.env)[1])
            bare.append(timed([bench.python, "-c", "pass"], bench.env)[1])
    out("| | CPU s (median) |\n|---|---|")
    out(f"| archiver backfill of a day without calls | {statistics.median(ours):.3f} |")
    out(
        f"| Python importing the libraries a backfill loads, and making one S3 client | {statistics.median(floor):.3f} |"
    )
    bare_cpu = statistics.median(bare)
    for label, script in LIBRARY_COSTS:
        cpu = statistics.median(timed([bench.python, "-c", script], bench.env)[1] for _ in range(runs))
        out(f"| {label} | {cpu - bare_cpu:.3f} |")
    out(f"| Python alone | {bare_cpu:.3f} |")
    # The floor moves with the machine; what the archiver controls is what it adds to it,
    # measured in the same run.
    above = statistics.median(ours) - statistics.median(floor)
    out(
        f"\nThe archiver adds {above:.3f} CPU s to importing its libraries and making its S3 client "
        f"({statistics.median(ours) / statistics.median(floor):.2f}x the floor measured in this run)."
    )


_CLIENT = "boto3.session.Session().client('s3', endpoint_url='http://127.0.0.1:9', region_name='us-east-1')"
FLOOR_SCRIPT = f"import httpx, anyio, structlog, yaml, stamina, sqlite3, cattrs, cattrs.gen, zoneinfo, boto3; {_CLIENT}"

# Each alone in a fresh Python, less Python's own start (modules they share count in each).
LIBRARY_COSTS = (
    ("of which boto3 and one S3 client", f"import boto3; {_CLIENT}"),
    ("of which httpx", "import httpx"),
    ("of which cattrs", "import cattrs, cattrs.gen"),
    ("of which structlog", "import structlog"),
    ("of which anyio, PyYAML, stamina", "import anyio, yaml, stamina"),
    ("besides: the config's models on attrs, with cattrs", "import archiver.config.structure"),
)


def processes(bench: Bench, out: Callable[[str], None], counts: tuple[int, ...] = (1, 2, 4), days: int = 4) -> None:
    """One backfill of *days* days by 1, 2 and 4 worker processes (``--processes``), against the
    ideal (the 1-process time divided by the count). 100 ms of latency on every simulator
    response, as a backfill over a real network has, concurrency 8 per process."""
    data = dataset_for(300, seed=13)
    first = DAY - timedelta(days=days)
    with Simulator(data, faults=Faults(recording_latency=0.1, api_latency=0.1)) as sim:
        recordings = sum(
            len([c for c in data.calls_on(first + timedelta(days=i)) if c.serves_recording]) for i in range(days)
        )
        out(
            "| processes | seconds | CPU s (all processes) | recordings/s | speedup | ideal |\n|---|---|---|---|---|---|"
        )
        base = None
        for count in counts:
            seconds, cpu = bench.backfill_in_processes(sim, count, first, DAY)
            base = base or seconds
            out(
                f"| {count} | {seconds:.2f} | {cpu:.2f} | {recordings / seconds:.0f} | {base / seconds:.2f}x | {count}.00x |"
            )
        out(f"\n{days} days, {recordings} recordings.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="also measure 240 calls of short recordings (1 s to 6 s)")
    parser.add_argument("--only-short", action="store_true", help="measure only the short recordings (and start-up)")
    parser.add_argument("--latency", action="store_true", help="also measure with 100 ms per simulator response")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree add): its archiver runs beside this one",
    )
    parser.add_argument("--memory", action="store_true", help="also measure 500 MiB recordings and a 1M-call ledger")
    parser.add_argument("--hosts", action="store_true", help="also run one backfill on 1, 2 and 3 hosts at once")
    parser.add_argument("--processes", action="store_true", help="also run one backfill by 1, 2 and 4 processes")
    parser.add_argument("--encryption", action="store_true", help="also measure storage.encryption on against off")
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        print("rclone is not installed (apt-get install rclone)", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {datetime.now(TZ):%Y-%m-%d}")
    moto = MotoServer()
    moto.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            bench = Bench(Path(tmp), moto, install(Path(tmp)))
            baseline = install(Path(tmp), args.baseline) if args.baseline else None
            data = dataset_for(args.recordings)
            cases = [] if args.only_short else [(data, "")]
            if args.short or args.only_short:
                cases.append((short_dataset_for(240), "240 calls of short recordings: "))
            for dataset, what in cases:
                with Simulator(dataset) as sim:
                    served = day_recordings(sim)
                    size = sum(served)
                    print(
                        f"\n## Throughput: {what}{len(served)} recordings, {size / (1 << 20):.1f} MiB, "
                        f"median of {args.runs} runs\n"
                    )
                    compare(bench, sim, 8, args.runs, print, baseline)
            print(f"\n## Start-up: median of {args.runs} runs\n")
            startup(bench, args.runs, print)
            if args.latency:
                for concurrency in (8, 16, 32):
                    with Simulator(data, faults=Faults(recording_latency=0.1, api_latency=0.1)) as sim:
                        ideal = concurrency / 0.1
                        print(f"\n## 100 ms latency, concurrency {concurrency} (ideal {ideal:.0f} recordings/s)\n")
                        compare(bench, sim, concurrency, 1, print)
            if args.processes:
                print("\n## One backfill, several processes (--processes)\n")
                processes(bench, print)
            if args.encryption:
                with Simulator(data) as sim:
                    print(f"\n## Encryption on against off: median of {args.runs} runs, interleaved\n")
                    encryption(bench, sim, args.runs, print)
            if args.memory:
                memory(bench, Path(tmp), encrypted=args.encryption)
            if args.hosts:
                hosts(bench, Path(tmp))
    finally:
        moto.stop()
    return 0


def encryption(bench: Bench, sim: Simulator, runs: int, out: Callable[[str], None]) -> None:
    """storage.encryption on against off, runs interleaved: CPU per call and per object stored (an
    encrypted recording brings two objects more: its key object and its label, in the keys bucket)."""
    recordings = len(day_recordings(sim))
    plain: list[Measure] = []
    sealed: list[Measure] = []
    for _ in range(runs):
        plain.append(bench.archiver(sim, 8))
        sealed.append(bench.archiver(sim, 8, encrypted=True))
    off, on = median(plain), median(sealed)
    out(HEADER)
    out(row("archiver, encryption off", off, recordings))
    out(row("archiver, storage.encryption (age, 2 recipients)", on, recordings))
    per_call = [e.cpu_seconds / p.cpu_seconds for p, e in zip(plain, sealed, strict=True)]
    out(
        f"\n**Encryption on / off: CPU per call {on.cpu_ms_per_call / off.cpu_ms_per_call:.2f}x** (paired runs "
        f"{min(per_call):.2f}x to {max(per_call):.2f}x), CPU per object stored {on.cpu_ms_per_object / off.cpu_ms_per_object:.2f}x "
        f"({on.objects} objects against {off.objects}: each recording's key object and label), peak RSS "
        f"{on.peak_rss_mib:.0f} against {off.peak_rss_mib:.0f} MiB."
    )


def install(tmp: Path, source: Path | None = None) -> str:
    """The archiver installed as an operator installs it (``pip install``, no development tools,
    bytecode compiled) in a virtual environment of its own; its Python. *source*: a checkout to
    install from (default: this one)."""
    venv = tmp / ("installed" if source is None else "baseline")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", str(source or Path(__file__).resolve().parents[1])]
    subprocess.run(pip, check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    return str(venv / "bin" / "python")


def memory(bench: Bench, tmp: Path, *, encrypted: bool = False) -> None:
    big = Dataset(seed=3, calls_per_day=11, max_duration=1, long_call_rate=1.0, long_call_seconds=32768)
    big.calls_on(DAY)
    with Simulator(big) as sim:
        served = day_recordings(sim)
        sizes = sorted(served)
        print(f"\n## Memory: {len(served)} recordings of {sizes[0] / (1 << 20):.0f} MiB, concurrency 8\n")
        measure = bench.archiver(sim, 8)
        print(HEADER)
        print(row("archiver (concurrency 8)", measure, len(served)))
        if encrypted:
            print(
                row("archiver, storage.encryption (concurrency 8)", bench.archiver(sim, 8, encrypted=True), len(served))
            )
    small = dataset_for(100)
    with Simulator(small) as sim:
        print("\n## Memory as the ledger grows (the same 100-recording backfill)\n")
        print("| calls already in the ledger | peak RSS MiB | seconds |\n|---|---|---|")
        for calls in (10_000, 1_000_000):
            ledger = tmp / f"ledger-{calls}.sqlite3"
            synthetic_ledger(ledger, calls)
            m = bench.archiver(sim, 8, ledger=ledger)
            print(f"| {calls:,} | {m.peak_rss_mib:.0f} | {m.seconds:.2f} |")


def hosts(bench: Bench, tmp: Path, counts: tuple[int, ...] = (1, 2, 3), days: int = 6) -> None:
    """The same backfill run by 1, 2 and 3 hosts at once on one bucket (day shards).

    Latency-bound (100 ms per simulator response, concurrency 4 per host), as a backfill over a
    real network is: what more hosts add is more requests in flight, not CPU.
    """
    data = Dataset(seed=11, calls_per_day=80, max_duration=20)
    first = DAY - timedelta(days=days)
    with Simulator(data, faults=Faults(recording_latency=0.1, api_latency=0.1)) as sim:
        recordings = sum(
            len([c for c in data.calls_on(first + timedelta(days=i)) if c.serves_recording]) for i in range(days)
        )
        print(
            f"\n## Several hosts, one backfill: {days} days, {recordings} recordings, 100 ms latency, concurrency 4\n"
        )
        print("| hosts | seconds | speedup | ideal |\n|---|---|---|---|")
        base = None
        for count in counts:
            seconds = bench.backfill_on_hosts(sim, count, first, DAY)
            base = base or seconds * counts[0]
            print(f"| {count} | {seconds:.2f} | {base / seconds:.2f}x | {count}.00x |")


def synthetic_ledger(path: Path, calls: int) -> None:
    """A ledger that already knows *calls* archived calls, spread over ten years before DAY."""
    Ledger.open(path, store_identity="pending").close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE name='store'")
    first = DAY - timedelta(days=3650)
    rows = (
        (f"{i:08x}-0000-4000-8000-{i:012x}", (first + timedelta(days=i % 3650)).isoformat(), "archived", 0.0)
        for i in range(calls)
    )
    db.executemany("INSERT INTO calls VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()


if __name__ == "__main__":
    raise SystemExit(main())
