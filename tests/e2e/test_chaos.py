"""The chaos run in CI size: faults everywhere, S3 outages and kill -9, then the proof.

Full size: ``python -m tests.chaos --calls 3000 --kills 10 --outages 3 --seed N``.
Another seed here: ``CHAOS_SEED=7 pytest tests/test_chaos.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.chaos import run_chaos


@pytest.mark.timeout(600)
def test_nothing_is_lost_duplicated_or_corrupted_under_chaos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every served recording ends up byte-identical, every call has one sidecar, nothing is overwritten."""
    seed = int(os.environ.get("CHAOS_SEED", "11"))
    result = run_chaos(calls=300, days=2, kills=4, outages=2, seed=seed, workdir=tmp_path, log=lambda line: None)
    with capsys.disabled():
        print(f"\nchaos (seed {seed}):\n{result.table()}")
    assert result.problems == []
    assert result.kills == 4
    assert result.outages == 2
    assert sum(result.faults.values()) > 10
    assert result.retries > 10
    assert result.outcomes["archived"] > 100
    assert sum(result.outcomes.values()) == result.calls
