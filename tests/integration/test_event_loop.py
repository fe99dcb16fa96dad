"""Nothing blocks the event loop: boto3's requests, and the credential lookups botocore makes
inside them, run in worker threads while downloads go on."""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from archiver.compose.stores import make_store
from archiver.simulator import Simulator
from archiver.source.fetch import Fetcher, LinkPolicy
from archiver.source.http import HttpClient
from archiver.store import put_bytes
from archiver.store.s3 import S3Store
from tests.helpers import AWS_ENV, FAST, SINCE, UNTIL, Bucket, config_for

pytestmark = pytest.mark.anyio
SLOW = 1.5  # seconds the credential source takes to answer


def slow_credential_source(tmp_path: Path) -> Path:
    """An AWS config file whose default profile gets its keys from a process that takes SLOW
    seconds and hands out keys expiring in 5 minutes, so botocore fetches them again before
    every request (its mandatory refresh window is 10 minutes)."""
    expires = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    answer = {
        "Version": 1,
        "AccessKeyId": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "SecretAccessKey": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "Expiration": expires,
    }
    script = tmp_path / "credentials.sh"
    script.write_text(f"#!/bin/sh\nsleep {SLOW}\necho '{json.dumps(answer)}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {script}\nregion = us-east-1\n")
    return config


async def test_downloads_flow_while_the_store_waits_for_slow_credentials(
    sim: Simulator, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three writes each wait for a 1.5 s credential lookup; meanwhile twenty recordings arrive
    and the event loop never stalls for more than a third of that."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(slow_credential_source(tmp_path)))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    config = config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint)
    store = make_store(config)
    assert isinstance(store, S3Store)
    recorded = [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.has_recording]
    links = [str(c.cdr(sim.url)["Cdr"]["recording_file"]) for c in recorded][:20]
    assert len(links) == 20
    stalls: list[float] = []
    downloaded: list[float] = []
    stored: list[float] = []
    started = time.monotonic()

    async def heartbeat() -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(0.01)
            stalls.append(time.monotonic() - before - 0.01)

    async def write() -> None:
        for n in range(3):
            await put_bytes(store, f"archive/_check/{n}.txt", b"x", "text/plain")
            stored.append(time.monotonic() - started)

    async with HttpClient(timeout=10, connections=4) as http:
        fetcher = Fetcher(http, LinkPolicy(("127.0.0.1",)), max_bytes=1 << 30, retry=FAST, not_found_retry=FAST)

        async def download(link: str) -> None:
            with await fetcher.fetch(link) as recording:
                assert recording.size > 0
            downloaded.append(time.monotonic() - started)

        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            async with anyio.create_task_group() as work:
                work.start_soon(write)
                for link in links:
                    work.start_soon(download, link)
            tg.cancel_scope.cancel()
    await store.aclose()
    assert len(stored) == 3
    assert stored[0] >= SLOW  # the lookups really were slow
    assert len(downloaded) == 20
    assert max(downloaded) < stored[0]  # every recording arrived while the first write still waited
    # Never for a credential lookup (boto3 called on the loop stalls it for seconds); the worker
    # thread that builds the client parses botocore's S3 model holding the GIL, which can pause
    # the loop for a few tenths of a second once on a busy machine.
    assert max(stalls) < SLOW / 3, f"the event loop stalled for {max(stalls):.2f} s"
    assert set(bucket.objects()) == {f"archive/_check/{n}.txt" for n in range(3)}
