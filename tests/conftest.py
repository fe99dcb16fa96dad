"""Fixtures: real servers on loopback; and the tiers.

The tiers are folders: ``unit/`` (no sockets), ``integration/`` (one component against a real
server), ``e2e/`` (the archiver as a user runs it: subprocesses, several hosts, chaos). Every
test under ``e2e/`` is marked ``slow``, so ``pytest -m "not slow"`` is the inner loop.

- ``moto_server``: a moto S3 server in its own process, over real HTTP (session-wide).
- ``bucket``: a fresh versioned bucket on it per test.
- ``rgw``: Ceph RGW on a one-node cluster (session-wide; skipped where Ceph is not installed,
  a failure where .ci/run installed it); ``rgw_bucket``: a fresh unversioned bucket on it.
- ``sim``: the ccall simulator on an ephemeral port, with a small deterministic dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.simulator import Dataset, Simulator
from tests.ceph import TOOLS, CephRgw
from tests.helpers import Bucket, MotoServer, make_bucket, need_os_tools, store_target


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if e2e in item.path.parents:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephRgw]:
    need_os_tools("Ceph RGW", *TOOLS)
    server = CephRgw(tmp_path_factory.mktemp("ceph")).start()
    yield server
    server.stop()


@pytest.fixture
def rgw_bucket(rgw: CephRgw) -> Bucket:
    """Unversioned: RGW 16 honours If-None-Match only there."""
    return make_bucket(rgw.endpoint, versioned=False)


@pytest.fixture(params=["moto", "rgw"])
def any_bucket(request: pytest.FixtureRequest) -> Bucket:
    """A fresh bucket on each S3 server: moto (versioned) and Ceph RGW (unversioned)."""
    return request.getfixturevalue("bucket" if request.param == "moto" else "rgw_bucket")  # type: ignore[no-any-return]


@pytest.fixture
def dataset() -> Dataset:
    return Dataset(seed=7, calls_per_day=30, max_duration=6)


@pytest.fixture
def sim(dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(dataset, seed=7) as server:
        yield server


@pytest.fixture(params=["s3", "file"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None, str]:
    """(storage url, endpoint, key prefix) for each kind of store."""
    return store_target(request.param, tmp_path, request)
