"""The whole pipeline against every shape of the API the client reads, on S3 and locally.

The vendor documents the API in prose and images; each dialect is a variant a server may
really send. Whatever the variant: every call archived once, every served recording archived
(never a wrong "none"), a bounded number of API requests.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from archiver.audit.reconcile import reconcile
from archiver.compose import assemble
from archiver.core.identity import legacy_call_id_for_row
from archiver.core.outcome import RecordingStatus
from archiver.errors import AuthenticationError
from archiver.simulator import Dataset, Dialect, Simulator
from archiver.source.ccall import CcallClient
from archiver.source.http import HttpClient
from tests.helpers import (
    FAST,
    SINCE,
    TZ,
    UNTIL,
    assert_archive_is_complete,
    backfill,
    config_for,
    local_objects,
    read_target,
    store_target,
)

pytestmark = pytest.mark.anyio

DIALECTS = {
    "as documented": Dialect(),
    "link named recording": Dialect(link_field="recording"),
    "bare rows": Dialect(bare_rows=True),
    "empty as null": Dialect(empty="null"),
    "empty as false": Dialect(empty="false"),
    "empty as {}": Dialect(empty="object"),
    "paging as strings": Dialect(paging_strings=True),
    "page ignored": Dialect(ignore_page=True),
    "no next_page": Dialect(no_next_page=True, paging_strings=True),
    "all at once": Dialect(
        link_field="recording", bare_rows=True, empty="null", paging_strings=True, no_next_page=True
    ),
}


# Every dialect against a local folder, and against S3 the documented wire and all variants at
# once, in the inner loop; the rest of the S3 matrix in the full run (the dialects do not touch
# the store, so it repeats what the folder shows).
MATRIX = [
    pytest.param(
        name,
        kind,
        id=f"{kind}-{name}",
        marks=[pytest.mark.slow] if kind == "s3" and name not in ("as documented", "all at once") else [],
    )
    for kind in ("s3", "file")
    for name in DIALECTS
]


@pytest.mark.parametrize(("name", "kind"), MATRIX)
async def test_every_dialect_archives_every_call_once(
    name: str, kind: str, dataset: Dataset, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Link name, wrapper, empty shapes and paging variants: the archive is complete, nothing is suspicious."""
    target = store_target(kind, tmp_path, request)
    with Simulator(dataset, seed=7, dialect=DIALECTS[name]) as sim:
        config = config_for(sim, target[0], tmp_path, endpoint=target[1])
        report = await backfill(config)
        empty_day = await backfill(config, datetime(2030, 1, 1, tzinfo=TZ), datetime(2030, 1, 2, tzinfo=TZ))
        requests = sim.stats["api.requests"]
        calls = sim.dataset.calls_between(SINCE, UNTIL, sim.now())
        assert_archive_is_complete(read_target(target, tmp_path, request), sim, calls, target[2])
    assert report.complete
    assert report.suspicious == 0
    served = sum(c.serves_recording for c in calls)
    assert report.outcomes[RecordingStatus.ARCHIVED] == served  # no recording turned into "none"
    assert empty_day.complete
    assert empty_day.done == 0
    pages = len(calls) // 7 + 1  # config_for asks for 7 rows a page
    assert requests <= 3 * pages + 12, requests  # each window's pages once, and a few more to learn the end


async def test_an_unrecorded_call_whose_volatile_fields_change_has_one_sidecar(
    dataset: Dataset, tmp_path: Path
) -> None:
    """mos, pdd and cid_name change between reads: the call keeps its id, and a re-run writes nothing."""
    with Simulator(dataset, seed=7, dialect=Dialect(volatile=True)) as sim:
        config = config_for(sim, f"file://{tmp_path / 'archive'}", tmp_path)
        first = await backfill(config)
        written = local_objects(tmp_path / "archive")
        (tmp_path / "ledger.sqlite3").unlink()  # forget everything: only the bucket can say it is done
        second = await backfill(config)
    assert first.outcomes[RecordingStatus.NONE] > 0
    assert second.done == 0
    assert second.skipped == first.done
    assert local_objects(tmp_path / "archive") == written


@pytest.mark.parametrize("ledger", ["lost", "version 1"])
async def test_an_archive_with_whole_row_ids_gets_no_duplicates_after_the_upgrade(
    ledger: str, sim: Simulator, tmp_path: Path
) -> None:
    """Calls archived under the earlier whole-row nr- ids are known under their new ids: nothing is written twice."""
    root = tmp_path / "archive"
    config = config_for(sim, f"file://{root}", tmp_path, poll={"lookback": "1h", "settle": "1m"})
    await backfill(config)
    renamed = 0
    for path in list(root.rglob("nr-*.json")):  # make it the archive an earlier version wrote
        doc = json.loads(path.read_bytes())
        old = legacy_call_id_for_row(doc["cdr"])
        doc["call_id"] = old
        path.with_name(f"{old}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        path.unlink()
        renamed += 1
    for day_file in [*root.rglob("manifest-sha256*.txt"), *root.rglob("calls*.csv"), *root.rglob("index*.html")]:
        day_file.unlink()
    shutil.rmtree(root / "seals")  # an earlier version wrote none
    if ledger == "lost":
        (tmp_path / "ledger.sqlite3").unlink()
    else:  # the ledger an earlier version left: its days were synced before ids were stable
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
            db.execute("UPDATE meta SET value='1' WHERE name='schema'")
            db.execute("DELETE FROM calls WHERE call_id LIKE 'nr-%'")
            db.executemany(
                "INSERT INTO calls VALUES (?, ?, 'stored', 0)",
                [(p.stem, p.parent.name) for p in root.rglob("nr-*.json")],
            )
    before = sorted(p.name for p in root.rglob("20*/*/*/*.json"))
    report = await backfill(config)
    async with assemble(config, api_retry=FAST) as parts:
        both_ways = await reconcile(
            parts.client, parts.store, tz=config.source.tz, prefix=config.storage.prefix, since=SINCE, until=UNTIL
        )
    assert renamed > 0
    assert report.done == 0  # every call was already there
    assert sorted(p.name for p in root.rglob("20*/*/*/*.json")) == before
    assert both_ways.consistent, (both_ways.not_archived[:3], both_ways.not_listed[:3])


async def test_bad_credentials_are_recognised_by_the_answer_s_shape_in_any_language(dataset: Dataset) -> None:
    """A 200 whose error object says code 401 in Vietnamese stops the program, not retried forever."""
    with Simulator(dataset, dialect=Dialect(json_auth=True)) as sim:
        async with HttpClient(timeout=5, connections=2) as http:
            client = CcallClient(http, base_url=sim.url, api_key=sim.api_key, api_secret="wrong000", retry=FAST)
            with pytest.raises(AuthenticationError, match="check source.api_key"):
                await client.registrations()
        assert sim.stats["api.requests"] == 1
