"""The API client against the simulator over HTTP: shapes, paging, errors, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from archiver.errors import ApiRejected, ApiUnavailable, AuthenticationError
from archiver.retry import RetryPolicy
from archiver.simulator import Dataset, Faults, Simulator
from archiver.source.ccall import CcallClient
from archiver.source.http import HttpClient
from tests.helpers import FAST, FakeClock

pytestmark = pytest.mark.anyio
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DAY_FROM, DAY_TO = "2026-11-01 00:00", "2026-11-02 00:00"


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(timeout=5, connections=4) as client:
        yield client


def client_for(
    sim: Simulator, http: HttpClient, *, secret: str | None = None, page_size: int = 7, retry: RetryPolicy = FAST
) -> CcallClient:
    return CcallClient(
        http,
        base_url=sim.url,
        api_key=sim.api_key,
        api_secret=secret or sim.api_secret,
        page_size=page_size,
        retry=retry,
    )


def expected_uuids(sim: Simulator, day_from: str = DAY_FROM, day_to: str = DAY_TO) -> list[str]:
    start = datetime.strptime(day_from, "%Y-%m-%d %H:%M").replace(tzinfo=TZ)
    end = datetime.strptime(day_to, "%Y-%m-%d %H:%M").replace(tzinfo=TZ) + timedelta(minutes=1)
    return [c.uuid for c in sim.dataset.calls_between(start, end, sim.now())]


def uuid_of(row: dict[str, dict[str, str]]) -> str:
    return (
        row["Cdr"]["recording_file"].split("/")[4]
        if row["Cdr"]["recording_file"]
        else "nr:" + row["Cdr"]["start"] + row["Cdr"]["source"]
    )


async def collect(
    client: CcallClient, day_from: str = DAY_FROM, day_to: str = DAY_TO
) -> list[dict[str, dict[str, str]]]:
    return [row async for row in client.cdr_rows(day_from, day_to)]


async def test_paged_rows_come_back_complete_and_newest_first(sim: Simulator, http: HttpClient) -> None:
    """Following next_page yields every row of the window once, in the API's newest-first order."""
    rows = await collect(client_for(sim, http))
    want = sim.dataset.calls_between(
        datetime(2026, 11, 1, tzinfo=TZ), datetime(2026, 11, 2, 0, 1, tzinfo=TZ), sim.now()
    )
    assert len(rows) == len(want) > 14  # more than two pages of 7
    assert [r["Cdr"]["start"] for r in rows] == [c.start.strftime("%Y-%m-%d %H:%M:%S") for c in want]
    assert all(set(r) == {"Cdr"} for r in rows)


async def test_the_list_shape_is_read_too(dataset: Dataset, http: HttpClient) -> None:
    """An API that ignores page/limit and answers a plain list is read in one request."""
    with Simulator(dataset, ignore_paging=True) as sim:
        rows = await collect(client_for(sim, http))
        assert len(rows) == len(expected_uuids(sim))
        assert sim.stats["api.requests"] == 1


async def test_rows_that_shift_while_paging_are_read_again(dataset: Dataset, http: HttpClient) -> None:
    """When calls arrive during a paged read, the window is re-read so no row is skipped."""
    clock = FakeClock(datetime(2026, 11, 1, 9, 0, tzinfo=TZ))
    with Simulator(dataset, now=clock.now) as sim:
        client = client_for(sim, http, page_size=3)
        seen: set[str] = set()
        with capture_logs() as logs:
            async for row in client.cdr_rows(DAY_FROM, DAY_TO):
                seen.add(row["Cdr"]["start"] + row["Cdr"]["source"])
                clock.advance(minutes=20)  # calls end, rows appear on top, older ones shift down
        final = {
            c.start.strftime("%Y-%m-%d %H:%M:%S") + c.source
            for c in dataset.calls_between(
                datetime(2026, 11, 1, tzinfo=TZ),
                datetime(2026, 11, 1, 9, 0, tzinfo=TZ) + timedelta(hours=1),
                datetime(2026, 11, 1, 9, 0, tzinfo=TZ),
            )
        }
        assert final <= seen  # every call that existed when the read began was yielded
        assert any(e["event"] == "cdr_window.shifted" for e in logs)


async def test_calls_by_id_and_registrations(sim: Simulator, http: HttpClient) -> None:
    """The call-id query returns the list shape with one row; ext_reg lists devices per extension."""
    call = next(c for c in sim.dataset.calls_on(datetime(2026, 11, 1).date()) if c.has_recording)
    client = client_for(sim, http)
    rows = await client.cdrs_by_call_id(call.sip_call_id)
    assert rows == [call.cdr(sim.url)]
    regs = await client.registrations()
    assert [r.extension for r in regs] == ["101", "101", "104"]
    assert regs[1].agent == "Yealink SIP-T46U"


async def test_wrong_credentials_stop_with_a_clear_message_without_the_secret(sim: Simulator, http: HttpClient) -> None:
    """HTTP 401 is not retried; the error names the keys to check and hides the secret."""
    wrong = "deadbeef"
    with pytest.raises(AuthenticationError) as caught:
        await collect(client_for(sim, http, secret=wrong))
    assert "rejected the credentials (HTTP 401)" in str(caught.value)
    assert "source.api_secret" in str(caught.value)
    assert wrong not in str(caught.value)
    assert sim.stats["api.requests"] == 1


async def test_transient_faults_are_retried_until_the_rows_arrive(dataset: Dataset, http: HttpClient) -> None:
    """5xx, 429, HTML pages and JSON without 'response' are retried; the rows all arrive."""
    faults = Faults(api_error_rate=0.3, api_429_rate=0.1, api_html_rate=0.1, api_no_response_rate=0.1, retry_after=0.01)
    with Simulator(dataset, faults=faults, seed=3) as sim:
        retry = RetryPolicy(attempts=30, timeout=30, wait_initial=0.001, wait_max=0.01)
        rows = await collect(client_for(sim, http, retry=retry))
        faults.api_error_rate = faults.api_429_rate = faults.api_html_rate = faults.api_no_response_rate = 0
        assert sorted(uuid_of(r) for r in rows) == sorted(uuid_of(r) for r in await collect(client_for(sim, http)))
        injected = sum(v for k, v in sim.stats.items() if k.startswith("fault.api"))
        assert injected >= 3


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        (Faults(api_html_rate=1), "answered HTTP 200 with a body that is not JSON (text/html)"),
        (Faults(api_no_response_rate=1), 'answered JSON without a \'response\' key: {"status": "error"'),
        (Faults(api_error_rate=1), "answered HTTP 50"),
    ],
)
async def test_persistent_bad_answers_end_in_an_error_that_says_what_came_back(
    dataset: Dataset, http: HttpClient, faults: Faults, message: str
) -> None:
    """After the retries, the error names what the API sent instead of rows."""
    with Simulator(dataset, faults=faults) as sim:
        with pytest.raises(ApiUnavailable, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
            await collect(client_for(sim, http))
        assert sim.stats["api.requests"] == FAST.attempts


async def test_retry_after_is_honoured(dataset: Dataset, http: HttpClient) -> None:
    """A 429 with Retry-After waits that long before the next try, whatever the backoff says."""
    policy = RetryPolicy(attempts=3, timeout=10, wait_initial=0.001, wait_max=0.001)
    with (
        Simulator(dataset, faults=Faults(api_429_rate=1, retry_after=0.3)) as sim,
        capture_logs() as logs,
        pytest.raises(ApiUnavailable, match="HTTP 429"),
    ):
        await collect(client_for(sim, http, retry=policy))
    waits = [e["wait_for"] for e in logs if e["event"] == "stamina.retry_scheduled"]
    assert waits == [0.3, 0.3]  # the server's wait, not the policy's 1 ms


async def test_an_unreachable_api_is_unavailable_not_fatal(http: HttpClient) -> None:
    """Nothing listening is a transient failure that names the URL."""
    client = CcallClient(http, base_url="http://127.0.0.1:9", api_key="k", api_secret="s", retry=FAST)
    with pytest.raises(ApiUnavailable, match=r"POST http://127.0.0.1:9/cdrs/json failed"):
        await collect(client)


async def test_a_wrong_path_is_rejected_with_a_hint(sim: Simulator, http: HttpClient) -> None:
    """A 404 from the API means base_url is wrong; it is not retried."""
    client = CcallClient(http, base_url=sim.url + "/v2", api_key=sim.api_key, api_secret=sim.api_secret, retry=FAST)
    with pytest.raises(ApiRejected, match=r"HTTP 404.*is source.base_url right\?"):
        await collect(client)
    assert sim.stats["api.requests"] == 0  # the simulator does not count unknown paths
