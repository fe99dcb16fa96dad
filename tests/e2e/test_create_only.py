"""check, backfill and run refuse a store that ignores create-only writes, unless told to look first."""

from __future__ import annotations

from pathlib import Path

from archiver.simulator import Simulator
from tests.helpers import Bucket, archive_objects, config_dict, run_cli, write_config
from tests.s3faults import FaultProxy


def test_a_store_that_ignores_if_none_match_stops_check_backfill_and_run(
    sim: Simulator, bucket: Bucket, tmp_path: Path
) -> None:
    """Exit 2 naming conditional writes, before anything is archived; look_before_write lets a
    single instance work (coordination needs If-Match, which this store also drops: refused, named)."""
    with FaultProxy(bucket.endpoint, strip=("if-none-match", "if-match")) as proxy:
        raw = config_dict(api=sim, storage=bucket.url, state=tmp_path / "ledger.sqlite3", endpoint=proxy.endpoint)
        config = write_config(tmp_path, raw)
        check = run_cli("check", "-c", str(config))
        backfill = run_cli("backfill", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-02")
        run = run_cli("run", "-c", str(config), timeout=60)
        assert archive_objects(bucket) == {}
        raw["storage"]["create_only"] = "look_before_write"
        coordinated = run_cli("check", "-c", str(write_config(tmp_path, raw)))
        raw["coordination"] = {"enabled": False}
        looking = write_config(tmp_path, raw)
        check_looking = run_cli("check", "-c", str(looking))
        first = run_cli("backfill", "-c", str(looking), "--since", "2026-11-01", "--until", "2026-11-02")
        written = archive_objects(bucket)  # and not a key written twice
        (tmp_path / "ledger.sqlite3").unlink()  # a re-run with the ledger lost writes nothing either
        again = run_cli("backfill", "-c", str(looking), "--since", "2026-11-01", "--until", "2026-11-02")
    for refused in (backfill, run):
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "ignores If-None-Match" in refused.stderr
    assert check.returncode == 2
    assert "FAIL  create-only:" in check.stdout
    assert coordinated.returncode == 2
    assert "accepted a replacement on a stale ETag (If-Match)" in coordinated.stdout
    assert "coordination.enabled: false" in coordinated.stdout
    assert check_looking.returncode == 0, check_looking.stdout
    assert "WARN  create-only: storage.create_only is look_before_write" in check_looking.stdout
    assert first.returncode == 0, first.stdout + first.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert written
    assert archive_objects(bucket) == written
