"""Downloads: every check that stands between a link and the bucket, over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import date
from http.server import BaseHTTPRequestHandler

import pytest

from archiver.errors import RecordingRejected, RecordingUnavailable
from archiver.retry import RetryPolicy
from archiver.simulator import Dataset, Faults, SimCall, Simulator
from archiver.source.fetch import Fetcher, LinkPolicy
from archiver.source.http import HttpClient
from tests.helpers import FAST, TinyServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(timeout=0.5, connections=4) as client:
        yield client


def fetcher(http: HttpClient, *hosts: str, max_bytes: int = 1 << 30, retry: RetryPolicy = FAST) -> Fetcher:
    return Fetcher(
        http,
        LinkPolicy(hosts or ("127.0.0.1",)),
        max_bytes=max_bytes,
        retry=retry,
        not_found_retry=FAST,
        spool_memory=4096,
    )


def a_recorded_call(sim: Simulator) -> SimCall:
    return next(c for c in sim.dataset.calls_on(date(2026, 11, 1)) if c.has_recording and c.duration >= 2)


def link(sim: Simulator, call: SimCall) -> str:
    return sim.url + call.recording_path()


async def test_a_recording_arrives_byte_identical_with_its_checksum(sim: Simulator, http: HttpClient) -> None:
    """The buffer holds exactly the served bytes; SHA-256 and WAV parameters come with it."""
    call = a_recorded_call(sim)
    expected = sim.dataset.recording_bytes(call)
    with await fetcher(http).fetch(link(sim, call)) as download:
        assert download.file.read() == expected
        assert download.size == len(expected) == call.recording_size
        assert download.sha256 == hashlib.sha256(expected).digest()
        assert download.format == "wav"
        assert download.audio is not None
        assert download.audio.duration_seconds == call.duration


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "host '169.254.169.254' is not in source.allowed_recording_hosts"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("http://user:pw@127.0.0.1/x", "the link carries credentials"),
        ("http://127.0.0.1:99999/x", "not a valid URL"),
        ("ftp://127.0.0.1/x", "scheme 'ftp' is not allowed"),
    ],
)
async def test_links_outside_the_allowed_hosts_are_never_fetched(http: HttpClient, url: str, reason: str) -> None:
    """Policy refuses before any connection is made."""
    with pytest.raises(RecordingRejected, match=reason) as caught:
        await fetcher(http).fetch(url)
    assert caught.value.kind == "host_not_allowed"


@pytest.mark.parametrize(
    ("pattern", "host", "allowed"),
    [
        ("rec.ccall.vn", "rec.ccall.vn", True),
        ("rec.ccall.vn", "evil.vn", False),
        ("*.ccall.vn", "a.b.ccall.vn", True),
        ("*.ccall.vn", "ccall.vn", False),
        ("*.ccall.vn", "evilccall.vn", False),
        ("rec.ccall.vn:8443", "rec.ccall.vn:8443", True),
        ("rec.ccall.vn:8443", "rec.ccall.vn", False),
    ],
)
def test_host_patterns(pattern: str, host: str, allowed: bool) -> None:
    """Exact hosts, host:port and *.domain match as documented."""
    assert (LinkPolicy((pattern,)).refusal(f"https://{host}/cdr/x") is None) == allowed


async def test_a_redirect_to_a_forbidden_host_is_not_followed(http: HttpClient) -> None:
    """Each redirect hop is checked against the allowed hosts."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "http://169.254.169.254/latest/meta-data/iam")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with TinyServer(respond) as server, pytest.raises(RecordingRejected, match="169.254.169.254") as caught:
        await fetcher(http).fetch(server.url + "/cdr/x")
    assert caught.value.kind == "redirect_not_allowed"


async def test_an_allowed_redirect_is_followed(sim: Simulator, http: HttpClient) -> None:
    """A redirect within the allowed hosts reaches the recording, and the final URL is kept."""
    call = a_recorded_call(sim)

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(301)
        h.send_header("Location", link(sim, call))
        h.send_header("Content-Length", "0")
        h.end_headers()

    with TinyServer(respond) as server, await fetcher(http).fetch(server.url + "/moved") as download:
        assert download.url == link(sim, call)
        assert download.size == call.recording_size


async def test_a_declared_length_over_the_cap_is_refused_unread(sim: Simulator, http: HttpClient) -> None:
    """Content-Length above max_bytes is rejected before the body is read."""
    call = a_recorded_call(sim)
    with pytest.raises(RecordingRejected, match="over download.max_bytes") as caught:
        await fetcher(http, max_bytes=1000).fetch(link(sim, call))
    assert caught.value.kind == "too_large"


async def test_an_endless_body_is_cut_off_at_the_cap(http: HttpClient) -> None:
    """A chunked body with no length is cut off once it passes max_bytes, not buffered whole."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"RIFF" + b"\x00" * 65532
        try:
            for _ in range(10_000):  # 640 MiB if nobody stops reading
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            return

    with (
        TinyServer(respond) as server,
        pytest.raises(RecordingRejected, match="grew past download.max_bytes") as caught,
    ):
        await fetcher(http, max_bytes=1 << 20).fetch(server.url + "/big")
    assert caught.value.kind == "too_large"


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (Faults(recording_cut_rate=1), {"cut_off", "short_body"}),
        (Faults(recording_truncated_rate=1), {"truncated"}),
        (Faults(recording_stall_rate=1, stall_seconds=2), {"stalled"}),
        (Faults(recording_html_rate=1), {"not_audio"}),
        (Faults(recording_error_rate=1), {"http_error"}),
        (Faults(recording_429_rate=1, retry_after=0.01), {"http_error"}),
        (Faults(recording_delay=1e10), {"not_found"}),
    ],
)
async def test_broken_bodies_are_never_accepted(
    dataset: Dataset, http: HttpClient, faults: Faults, kind: set[str]
) -> None:
    """Cut-off, truncated (RIFF size), stalled, HTML-as-WAV, 5xx, 429 and 404 are all refused."""
    with Simulator(dataset, faults=faults) as sim:
        with pytest.raises(RecordingUnavailable) as caught:
            await fetcher(http).fetch(link(sim, a_recorded_call(sim)))
        assert caught.value.kind in kind
        assert sim.stats["recording.requests"] == FAST.attempts  # the quick tries, then give up


async def test_a_server_that_hangs_up_is_a_connection_failure_not_a_timeout(http: HttpClient) -> None:
    """A server that closes the connection without answering is recorded as such (a sidecar's
    attempt record says what happened), not as a server that was too slow."""

    def hang_up(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True  # and no answer

    with TinyServer(hang_up) as server, pytest.raises(RecordingUnavailable) as caught:
        await fetcher(http).fetch(server.url + "/rec.wav")
    assert caught.value.kind == "connection"
    assert "did not answer in time" not in str(caught.value)


async def test_a_flaky_link_succeeds_within_the_quick_tries(dataset: Dataset, http: HttpClient) -> None:
    """Intermittent failures cost retries, not the recording."""
    with Simulator(dataset, faults=Faults(recording_error_rate=0.5, recording_cut_rate=0.3), seed=11) as sim:
        call = a_recorded_call(sim)
        retry = RetryPolicy(attempts=25, timeout=20, wait_initial=0.001, wait_max=0.01)
        with await fetcher(http, retry=retry).fetch(link(sim, call)) as download:
            assert download.file.read() == sim.dataset.recording_bytes(call)
        assert sim.stats["recording.requests"] > 1


async def test_a_404_gets_fewer_tries_than_a_server_error(dataset: Dataset, http: HttpClient) -> None:
    """Not-found is tried a few times; a 5xx streak is tried harder, so a flaky server does not lose recordings."""
    two = RetryPolicy(attempts=2, timeout=10, wait_initial=0.001, wait_max=0.01)
    five = RetryPolicy(attempts=5, timeout=10, wait_initial=0.001, wait_max=0.01)
    for faults, requests in ((Faults(recording_delay=1e10), 2), (Faults(recording_error_rate=1), 5)):
        with Simulator(dataset, faults=faults) as sim:
            policy = Fetcher(http, LinkPolicy(("127.0.0.1",)), max_bytes=1 << 30, retry=five, not_found_retry=two)
            with pytest.raises(RecordingUnavailable):
                await policy.fetch(link(sim, a_recorded_call(sim)))
            assert sim.stats["recording.requests"] == requests


async def test_recordings_come_through_the_proxy_the_environment_names(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured per link (NO_PROXY exempts a host): a recording on a host that does
    not even resolve arrives, because the proxy fetched it; one on an exempt host comes direct."""
    call = a_recorded_call(sim)
    wanted = sim.dataset.recording_bytes(call)
    asked: list[str] = []

    def proxy(h: BaseHTTPRequestHandler) -> None:
        asked.append(h.path)  # a proxy is sent the absolute URL
        h.send_response(200)
        h.send_header("Content-Type", "audio/x-wav")
        h.send_header("Content-Length", str(len(wanted)))
        h.end_headers()
        h.wfile.write(wanted)

    with TinyServer(proxy) as server:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,internal.example")
        async with HttpClient(timeout=5, connections=2) as client:
            with await fetcher(client, "pbx.invalid").fetch("http://pbx.invalid/cdr/x.wav") as download:
                assert download.size == len(wanted)
                assert download.sha256 == hashlib.sha256(wanted).digest()
            with await fetcher(client).fetch(link(sim, call)) as direct:  # 127.0.0.1: exempt
                assert direct.sha256 == hashlib.sha256(wanted).digest()
    assert asked == ["http://pbx.invalid/cdr/x.wav"]
