"""What auditors rely on: verify, reconcile, the day files, retention settings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import archiver as package
from archiver.simulator import Simulator
from tests.helpers import (
    SINCE,
    MotoServer,
    backfill,
    config_dict,
    config_for,
    make_bucket,
    write_config,
)

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


async def test_objects_carry_legal_hold_lock_and_encryption(
    sim: Simulator, tmp_path: Path, moto_server: MotoServer
) -> None:
    """With storage.legal_hold, object_lock and sse set, every stored object carries them."""
    bucket = make_bucket(moto_server.endpoint, object_lock=True)
    config = config_for(
        sim,
        bucket.url,
        tmp_path,
        endpoint=bucket.endpoint,
        storage={"object_lock": {"mode": "COMPLIANCE", "retain_days": 10}, "legal_hold": True, "sse": "AES256"},
    )
    report = await backfill(config, SINCE, SINCE + timedelta(days=1))
    assert report.complete
    keys = list(bucket.objects())
    assert keys
    for key in keys:
        head = bucket.client.head_object(Bucket=bucket.name, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockLegalHoldStatus"] == "ON"
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(TZ) + timedelta(days=9)


def test_the_published_schema_is_in_the_package() -> None:
    """The sidecar schema ships with the package, where docs/auditing.md points."""
    schema = Path(package.__file__).parent / "schemas" / "sidecar-v1.schema.json"
    assert json.loads(schema.read_text())["properties"]["schema"]["const"] == "ccall-archiver/sidecar/v1"


def audit_config(tmp_path: Path, sim: Simulator, storage: dict[str, Any]) -> Path:
    return write_config(tmp_path, config_dict(api=sim, storage=storage, state=tmp_path / "ledger.sqlite3"))
