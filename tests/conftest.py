"""Fixtures: real servers on loopback.

- ``moto_server``: a moto S3 server in its own process, over real HTTP (session-wide).
- ``bucket``: a fresh versioned bucket on it per test.
- ``sim``: the ccall simulator on an ephemeral port, with a small deterministic dataset.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from archiver.simulator import Dataset, Simulator
from tests.helpers import Bucket, MotoServer, make_bucket


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_server: MotoServer) -> Bucket:
    return make_bucket(moto_server.endpoint)


@pytest.fixture
def dataset() -> Dataset:
    return Dataset(seed=7, calls_per_day=30, max_duration=6)


@pytest.fixture
def sim(dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(dataset, seed=7) as server:
        yield server
