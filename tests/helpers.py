"""Helpers for the tests: real servers on loopback, and a Config that points at them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import jsonschema
import pytest
import yaml
from botocore.config import Config as BotoConfig
from prometheus_client.parser import text_string_to_metric_families

from archiver.archive.events import ArchiveEvents
from archiver.archive.seal import Sealer
from archiver.compose import assemble
from archiver.config.load import parse_config
from archiver.config.models import Config
from archiver.core import seal
from archiver.core.clock import Clock
from archiver.core.dayfiles import set_number
from archiver.core.encryption import Identity, public
from archiver.core.identity import call_id_for_row
from archiver.core.keys import audio_key, parse_call_key, sidecar_key
from archiver.core.report import RunReport
from archiver.lifecycle.expire import Expirer
from archiver.retry import RetryPolicy
from archiver.simulator import SimCall, Simulator
from archiver.store import Store
from archiver.store.keys import KeyStore
from archiver.store.s3 import S3Store
from archiver.store.s3_bucket import S3Bucket
from archiver.store.s3_control import S3ControlStore

# The tests' own throwaway credentials for moto; the AWS chain reads them from here.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key-do-not-log",
    "AWS_DEFAULT_REGION": "us-east-1",
}
os.environ.update(AWS_ENV)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)

# .ci/run installs the OS tools some tests use (Chromium, systemd-nspawn and debootstrap, Ceph)
# and sets this, so that a test which would skip for want of one fails there instead.
REQUIRE_OS_TOOLS = os.environ.get("ARCHIVER_TEST_REQUIRE_OS_TOOLS") == "1"


def need_os_tools(what: str, *tools: str, root: bool = False) -> None:
    """Skip the calling test, naming what is missing, when an OS tool (or root) is not there;
    fail instead where REQUIRE_OS_TOOLS is set."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if root and os.geteuid() != 0:
        missing.append("root")
    if missing:
        message = f"{what} needs {', '.join(missing)} (Debian packages and root; .ci/run installs them)"
        if REQUIRE_OS_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


FAST = RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.01, wait_max=0.05)
PATIENT_STORE = RetryPolicy(attempts=None, timeout=60.0, wait_initial=0.1, wait_max=1.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class MotoServer:
    """moto's S3 server as a child process; can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (benchmarks charge it to the tool that ran)."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


def s3_client(endpoint: str, **settings: Any) -> Any:
    """The tests' own boto3 client for *endpoint*, set as the archiver sets its own (path-style,
    checksums only when required: Ceph RGW 16 refuses botocore's default aws-chunked uploads)."""
    config = BotoConfig(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        **settings,
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def s3_bucket(endpoint: str, bucket: str, client: Any = None) -> S3Bucket:
    """The bucket *bucket* on the S3 server at *endpoint*, through *client* or a new boto3 client."""
    return S3Bucket(client or s3_client(endpoint), bucket, endpoint=endpoint)


def s3_store(endpoint: str, bucket: str, *, client: Any = None, **kwargs: Any) -> S3Store:
    """An S3Store on *bucket*, as production makes it (one boto3 client)."""
    return S3Store(s3_bucket(endpoint, bucket, client), **kwargs)


def control_store(endpoint: str, bucket: str) -> S3ControlStore:
    """The control store (leases, claims) on *bucket*."""
    return S3ControlStore(s3_bucket(endpoint, bucket))


@dataclass
class Bucket:
    endpoint: str
    name: str
    client: Any

    @property
    def url(self) -> str:
        return f"s3://{self.name}/archive"

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object in the bucket: key -> bytes."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = self.client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
        return out

    def purge(self, key: str) -> None:
        """*key* as if it had never been written: every version and delete marker removed (what a
        crash before the write leaves; a plain delete would leave a marker to put back from)."""
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.name, Prefix=key)
        for page in pages:
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if item["Key"] == key:
                    self.client.delete_object(Bucket=self.name, Key=key, VersionId=item["VersionId"])

    def versions(self) -> list[dict[str, Any]]:
        """Every version of every object in the bucket (all pages)."""
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.name)
        return [version for page in pages for version in page.get("Versions", [])]


def make_bucket(endpoint: str, *, object_lock: bool = False, versioned: bool = True) -> Bucket:
    """A fresh bucket on the S3 server at *endpoint*, versioned unless told otherwise."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    client = s3_client(endpoint)
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return Bucket(endpoint, name, client)


def retain_by_default(bucket: Bucket, mode: str = "GOVERNANCE", days: int = 30) -> None:
    """Give *bucket* (made with Object Lock) a default retention: every object written is locked."""
    bucket.client.put_object_lock_configuration(
        Bucket=bucket.name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}},
        },
    )


class FakeClock:
    """A clock the test moves by hand; shared by the simulator and the archiver."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def age_identity(folder: Path, name: str = "age-identity") -> Identity:
    """A fresh age identity, written to *folder*/*name* (mode 0600) as age-keygen writes one."""
    identity = Identity.generate()
    path = folder / name
    path.write_text(f"# created by the tests\n# public key: {public(identity)}\n{identity}\n")
    path.chmod(0o600)
    return identity


def encryption_section(keys_url: str, *recipients: Identity, identity_file: Path | None = None) -> dict[str, Any]:
    """``storage.encryption`` to *recipients*, keys at *keys_url* (a storage section's keys)."""
    section: dict[str, Any] = {"age_recipients": [public(r) for r in recipients], "keys_url": keys_url}
    if identity_file is not None:
        section["identity_file"] = str(identity_file)
    return {"encryption": section}


def config_dict(
    *,
    api: str | Simulator,
    storage: str | dict[str, Any],
    state: Path | str,
    endpoint: str | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """A configuration as YAML would hold it: the API at *api* (a simulator brings its own
    credentials), the store at *storage* (a URL, or the whole section), the ledger at *state*;
    *sections* are merged over these, key by key."""
    if isinstance(api, str):
        source = {"base_url": api, "api_key": "a1b2c3d4", "api_secret": "5e6f7a8b"}
    else:
        source = {"base_url": api.url, "api_key": api.api_key, "api_secret": api.api_secret}
    raw: dict[str, Any] = {
        "source": source,
        "storage": {"url": storage} if isinstance(storage, str) else dict(storage),
        "state": {"path": str(state)},
    }
    if endpoint:
        raw["storage"]["endpoint_url"] = endpoint
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    """*raw* written as YAML to *path* (a directory gets ``config.yaml``)."""
    if path.is_dir():
        path = path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


DAEMON_SECRET = "9f8e7d6c"


def daemon_config(tmp_path: Path, api: str, **sections: dict[str, Any]) -> Path:
    """A daemon that polls every second, archiving into a folder, with the API secret DAEMON_SECRET."""
    poll = {"interval": "1s", "settle": "1s", "lookback": "3h"}
    raw = config_dict(api=api, storage=f"file://{tmp_path / 'archive'}", state=tmp_path / "ledger.sqlite3", poll=poll)
    raw["source"]["api_secret"] = DAEMON_SECRET
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return write_config(tmp_path, raw)


def config_for(
    sim: Simulator,
    storage_url: str,
    tmp_path: Path,
    *,
    endpoint: str | None = None,
    **sections: dict[str, Any],
) -> Config:
    """A validated Config pointing at *sim* and the given store (small pages and four workers)."""
    raw = config_dict(api=sim, storage=storage_url, state=tmp_path / "ledger.sqlite3", endpoint=endpoint)
    raw["source"]["page_size"] = 7
    raw["download"] = {"concurrency": 4}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_config(raw, environ={})


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``archiver ARGS`` in a subprocess, as a user runs it; *env* is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def wait_for_event(log: Path, event: str, *, count: int = 1, timeout: float = 30.0) -> None:
    """Wait until the JSON log *log* (of start_archiver) holds *event* at least *count* times."""
    wait_until(lambda: log.exists() and log_events(log).count(event) >= count, timeout)


class OnProgress(ArchiveEvents):
    """An observer that calls *callback* with the run's report after each call."""

    def __init__(self, callback: Callable[[RunReport], None]) -> None:
        self._callback = callback

    def progressed(self, report: RunReport) -> None:
        self._callback(report)


Responder = Callable[[BaseHTTPRequestHandler], None]


class TinyServer:
    """An HTTP server on loopback whose every request is answered by *respond* (for odd answers)."""

    def __init__(self, respond: Responder) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                respond(self)

            def do_POST(self) -> None:
                respond(self)

            def do_PUT(self) -> None:
                respond(self)

            def do_HEAD(self) -> None:
                respond(self)

            def do_DELETE(self) -> None:
                respond(self)

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> TinyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 118\r\nConnection: close\r\n\r\n"
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class ToggleProxy:
    """A TCP proxy in front of a server (the S3 server) that a test can take down and bring back.

    ``mode`` is ``"up"`` (forward), ``"down"`` (connections are refused, open ones reset) or
    ``"slowdown"`` (every new connection gets an S3 ``503 SlowDown``). The server behind keeps
    its state, which a restarted moto would not.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.mode = "up"
        self.outages = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> ToggleProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.mode == "slowdown":
                with contextlib.suppress(OSError):
                    client.sendall(_SLOW_DOWN)
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.mode == "down":  # taken down while this connection was being set up
                    client.close()
                    upstream.close()
                    continue
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
                with self._lock:
                    self._open.discard(s)

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            self.mode = "down"
            self.outages += 1
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(), which releases the port.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for s in list(self._open):
                # shutdown() wakes the pump thread blocked in recv(); close() alone would not,
                # and the client would wait for its read timeout instead of seeing the outage.
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def up(self) -> None:
        with self._lock:
            self.mode = "up"
            if self._listener is None:
                self._listen()

    def slowdown(self, on: bool) -> None:
        self.mode = "slowdown" if on else "up"

    def stop(self) -> None:
        self.down()


_SIDECAR_SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "archiver" / "schemas" / "sidecar-v1.schema.json").read_text()
)
_SIDECAR_VALIDATOR = jsonschema.Draft202012Validator(_SIDECAR_SCHEMA)


def check_sidecar(doc: Any) -> None:
    """Raise if *doc* does not follow the published sidecar schema."""
    _SIDECAR_VALIDATOR.validate(doc)


def start_archiver(command: str, config: Path, *args: str, log: Path, level: str = "info") -> subprocess.Popen[bytes]:
    """``archiver COMMAND -c CONFIG ARGS`` in the background, JSON log lines (from *level* up)
    appended to *log*."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "archiver",
                "--log-format",
                "json",
                "--log-level",
                level,
                command,
                "-c",
                str(config),
                *args,
            ],
            stdout=out,
            stderr=out,
            env=os.environ.copy(),
        )


def log_events(log: Path) -> list[str]:
    """The events of a JSON log written by start_archiver, in order."""
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line)["event"])
    return out


def wait_until(check: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll *check* until it is true; AssertionError after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@contextlib.contextmanager
def reaping() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """A dict for background processes; whatever still runs at the end is killed."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def terminate(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as systemd stops the service; the exit status."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def archive_objects(bucket: Bucket) -> dict[str, bytes]:
    """The archive's objects, control objects left out; fails if any was written twice."""
    objects = {k: v for k, v in bucket.objects().items() if "/_archiver/" not in k}
    versions = [v for v in bucket.versions() if "/_archiver/" not in v["Key"]]
    assert len(versions) == len(objects), "an archive object was written twice"
    return objects


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the first sample *name* with *labels* in a Prometheus exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


# -- archiving a period in-process, and checking what it stored ----------------------------------

TZ = ZoneInfo("Asia/Ho_Chi_Minh")  # the simulator's and the configs' zone
SINCE = datetime(2026, 11, 1, tzinfo=TZ)
UNTIL = datetime(2026, 11, 3, tzinfo=TZ)


async def backfill(
    config: Config,
    since: datetime = SINCE,
    until: datetime = UNTIL,
    clock: Clock | None = None,
    *,
    store_retry: RetryPolicy = PATIENT_STORE,
) -> RunReport:
    async with assemble(config, clock=clock, api_retry=FAST, download_retry=FAST, store_retry=store_retry) as parts:
        return await parts.archiver.backfill(since, until)


async def encrypted_backfill(
    sim: Simulator, tmp_path: Path, endpoint: str, *recipients: Identity, clock: Clock | None = None
) -> tuple[Bucket, Bucket]:
    """A backfill encrypted to *recipients* into fresh buckets on *endpoint*: the archive's (prefix
    ``archive``) and the keys' (prefix ``keys``)."""
    archive, keys = make_bucket(endpoint), make_bucket(endpoint)
    storage = encryption_section(f"s3://{keys.name}/keys", *recipients)
    await backfill(config_for(sim, archive.url, tmp_path, endpoint=archive.endpoint, storage=storage), clock=clock)
    return archive, keys


async def poll(
    config: Config, clock: Clock, lookback: timedelta = timedelta(hours=1), settle: timedelta = timedelta(minutes=1)
) -> RunReport:
    async with assemble(config, clock=clock, api_retry=FAST, download_retry=FAST, store_retry=PATIENT_STORE) as parts:
        return await parts.archiver.poll_once(lookback=lookback, settle=settle)


def local_objects(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def call_id(sim: Simulator, call: SimCall) -> str:
    return call.uuid if call.has_recording else call_id_for_row(call.cdr(sim.url)["Cdr"])


def assert_archive_is_complete(
    objects: dict[str, bytes], sim: Simulator, calls: list[SimCall], prefix: str
) -> dict[str, dict[str, Any]]:
    """Every call has one sidecar; every served recording is stored byte-identical; nothing else is there."""
    sidecars: dict[str, dict[str, Any]] = {}
    expected_keys = set()
    for call in calls:
        day = call.start.date()
        cid = call_id(sim, call)
        key = sidecar_key(prefix, day, cid)
        expected_keys.add(key)
        doc = json.loads(objects[key])
        check_sidecar(doc)
        sidecars[cid] = doc
        assert doc["schema"] == "ccall-archiver/sidecar/v1"
        assert doc["call_id"] == cid
        sent = sim.dialect.row(call.cdr(sim.url), 0)
        sent = sent.get("Cdr", sent)
        if sim.dialect.volatile:  # these change from read to read; the sidecar has one read's
            sent = {k: v for k, v in sent.items() if k not in ("mos", "pdd", "cid_name")}
            assert {k: v for k, v in doc["cdr"].items() if k not in ("mos", "pdd", "cid_name")} == sent
        else:
            assert doc["cdr"] == sent
        rec = doc["recording"]
        if not call.has_recording:
            assert rec == {"status": "none"}
        elif call.foreign_link:
            assert rec["status"] == "rejected"
        elif call.recording_missing:
            assert rec["status"] == "missing"
        else:
            body = sim.dataset.recording_bytes(call)
            akey = audio_key(prefix, day, cid, "wav")
            expected_keys.add(akey)
            assert objects[akey] == body
            assert rec["status"] == "archived"
            assert rec["key"] == akey
            assert rec["size"] == len(body)
            assert rec["sha256"] == hashlib.sha256(body).hexdigest()
    seals = {k for k in objects if seal.sequence_of(prefix, k) is not None}
    assert {k for k in objects if set_number(k.rsplit("/", 1)[-1]) is None} - seals == expected_keys
    assert_sealed(objects, prefix)
    return sidecars


def is_sidecar(key: str) -> bool:
    """Whether *key* is a call's record (its sidecar or a revision), not a seal or a day file."""
    parsed = parse_call_key(key)
    return parsed is not None and parsed.ext == "json"


def assert_sealed(objects: dict[str, bytes], prefix: str) -> seal.Chain:
    """The seal chain links up, and names every manifest in *objects* with the digest of its bytes."""
    chain = seal.check_chain(prefix, {k: v for k, v in objects.items() if k.startswith(seal.folder(prefix))})
    assert chain.problems == []
    sealed = chain.sealed()
    for key, data in objects.items():
        if key.rsplit("/", 1)[-1].startswith("manifest-sha256"):
            assert hashlib.sha256(data).hexdigest() in [digest for _, digest in sealed.get(key, [])], key
    return chain


def store_target(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str | None, str]:
    """(storage url, endpoint, key prefix) of a local folder ("file") or a fresh S3 bucket ("s3")."""
    if kind == "file":
        return f"file://{tmp_path / 'archive'}", None, ""
    bucket: Bucket = request.getfixturevalue("bucket")
    return bucket.url, bucket.endpoint, "archive"


def read_target(
    target: tuple[str, str | None, str], tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, bytes]:
    if target[1] is None:
        return local_objects(tmp_path / "archive")
    bucket: Bucket = request.getfixturevalue("bucket")
    return bucket.objects()


class Browse:
    """``archiver browse -c CONFIG`` in a subprocess, on a port it picks; JSON log lines to *log*."""

    def __init__(self, config: Path, log: Path, listen: str = "127.0.0.1:0") -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "archiver",
                "--log-format",
                "json",
                "browse",
                "-c",
                str(config),
                "--listen",
                listen,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"https?://\S+", line)
        assert match, line or log.read_text()[-2000:]
        self.url = match.group(0)
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def close(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=20)
        self._log.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def expirer_of(store: Store, keys: KeyStore | None, *, prefix: str = "archive") -> Expirer:
    """expire under retention 30d, on 2026-12-02 (2026-11-01 is past it, 2026-11-02 is not), of the
    archive under *prefix* and its keys."""
    clock = FakeClock(datetime(2026, 12, 2, 12, tzinfo=TZ))
    return Expirer(
        store,
        prefix,
        tz=TZ,
        keep=timedelta(days=30),
        policy="30d",
        clock=clock,
        sealer=Sealer(store, prefix, clock),
        keys=keys,
    )
