"""Serving on uvicorn inside a command (archiver.asgi): what browse and /metrics share."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Browse, write_config

pytestmark = pytest.mark.anyio


def test_answers_on_a_kept_alive_connection_are_not_held_back(tmp_path: Path) -> None:
    """The listening socket was made without naming TCP, so asyncio left Nagle's algorithm on for
    each connection: every answer after the first on a kept-alive connection (a player's Range
    requests, a browser's pages) waited out the client's delayed ACK, 40 ms. Now they are at once."""
    (tmp_path / "archive").mkdir()
    config = write_config(tmp_path / "auditor.yaml", {"storage": {"url": f"file://{tmp_path / 'archive'}"}})
    server = Browse(config, tmp_path / "browse.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            times = []
            for _ in range(15):
                began = time.perf_counter()
                client.get("/").raise_for_status()
                times.append(time.perf_counter() - began)
    finally:
        assert server.close() == 0
    assert statistics.median(times[1:]) < 0.02, times
