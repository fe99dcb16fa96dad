"""The attacks the desk stands against, each tried as a hostile user on the same machine would:
against a real ``archiver browse`` (uvicorn) in a subprocess, with a real nginx in front where a
proxy is part of the attack. Each test is one attack; its docstring says what it was and what
the desk does now.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from structlog.testing import capture_logs

from archiver.audit.access import MAX_PENDING, AccessTrail
from archiver.errors import StoreAccessError
from archiver.simulator import Simulator
from archiver.store.local import LocalStore
from archiver.web.throttle import MAX_KEYS, Throttle
from tests.desk import PASSWORD, archived, basic, from_address, htpasswd, log_lines, nginx, trail
from tests.helpers import SINCE, UNTIL, Browse, FakeClock, run_cli, write_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def running() -> Iterator[list[Browse]]:
    """Browse processes a test starts, stopped (and their exit checked) when it ends."""
    started: list[Browse] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.close()


def start(running: list[Browse], config: Path, log: Path, listen: str = "127.0.0.1:0") -> Browse:
    server = Browse(config, log, listen)
    running.append(server)
    return server


def stop(server: Browse) -> None:
    """Stop browse (SIGTERM): its trail is written to the bucket on the way out."""
    assert server.close() == 0


# -- the proxy check ------------------------------------------------------------------------------


async def test_a_forwarded_for_header_does_not_make_a_request_the_proxys(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """uvicorn believed X-Forwarded-For from 127.0.0.1, so a request from 127.0.0.1 claiming
    ``X-Forwarded-For: 127.0.0.2`` passed for the proxy's and signed in as anyone. Now a
    request's address is its connection's; the same request is refused, and the trail holds only
    the user nginx signed in."""
    users = htpasswd(tmp_path / "nginx-users", {"alice": PASSWORD})
    config, calls = await archived(sim, tmp_path, trusted_proxy={"from": ["127.0.0.2/32"]})
    log = tmp_path / "browse.log"
    server = start(running, config, log)
    with nginx(tmp_path / "nginx", users, server.url) as proxy:
        signed_in = httpx.get(f"{proxy}/calls/{calls[0].uuid}", headers=basic("alice", PASSWORD), timeout=30)
    forged = httpx.get(
        f"{server.url}calls/{calls[0].uuid}",
        headers={"X-Forwarded-For": "127.0.0.2", "X-Forwarded-User": "mallory"},
        timeout=30,
    )
    stop(server)
    assert signed_in.status_code == 200
    assert forged.status_code == 403
    assert [(e["user"], e["remote"]) for e in trail(tmp_path / "archive")] == [("alice", "127.0.0.2")]


async def test_a_forwarded_for_header_neither_resets_the_backoff_nor_names_the_address(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """Each guess with a new X-Forwarded-For counted as a new address (no backoff) and put any
    text in ``remote``. Now the second guess from the same connection address is refused unchecked,
    and the trail and the log name the real address."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config, calls = await archived(sim, tmp_path, users_file=str(users))
    log = tmp_path / "browse.log"
    server = start(running, config, log)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.get("/", headers={**basic("alice", "guess-1"), "X-Forwarded-For": "10.9.9.1"})
        second = client.get("/", headers={**basic("alice", PASSWORD), "X-Forwarded-For": "10.9.9.2"})
        time.sleep(1.1)
        page = client.get(
            f"/calls/{calls[0].uuid}", headers={**basic("alice", PASSWORD), "X-Forwarded-For": "<script>x</script>"}
        )
    stop(server)
    assert (first.status_code, second.status_code, page.status_code) == (401, 429, 200)
    assert {line["remote"] for line in log_lines(log, "browse.login_failed")} == {"127.0.0.1"}
    assert [e["remote"] for e in trail(tmp_path / "archive")] == ["127.0.0.1"]


async def test_a_second_user_header_from_the_proxy_is_refused(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A proxy that appends its X-Forwarded-User after the client's left the client's first, and
    browse took it. Now a request that names the user twice (or twice the groups) is refused."""
    config, calls = await archived(
        sim, tmp_path, trusted_proxy={"from": ["127.0.0.2"], "groups_header": "X-Forwarded-Groups"}
    )
    server = start(running, config, tmp_path / "browse.log")
    with from_address("127.0.0.2", server.url) as proxy:
        twice = proxy.get(
            f"/calls/{calls[0].uuid}", headers=[("X-Forwarded-User", "mallory"), ("X-Forwarded-User", "alice")]
        )
        groups = proxy.get(
            f"/calls/{calls[0].uuid}",
            headers=[("X-Forwarded-User", "alice"), ("X-Forwarded-Groups", "qa"), ("X-Forwarded-Groups", "all")],
        )
        once = proxy.get(f"/calls/{calls[0].uuid}", headers={"X-Forwarded-User": "alice"})
    stop(server)
    assert (twice.status_code, groups.status_code, once.status_code) == (403, 403, 200)
    assert [e["user"] for e in trail(tmp_path / "archive")] == ["alice"]


async def test_a_utf8_user_name_from_the_proxy_is_kept_as_written(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A UTF-8 name nginx passed on (``Nguyễn``) was read as Latin-1 and stored garbled. Now it is
    read as UTF-8 and kept as written; a header that is not UTF-8, or holds control characters,
    is refused."""
    name = "Nguyễn Văn An"
    users = htpasswd(tmp_path / "nginx-users", {name: PASSWORD})
    config, calls = await archived(sim, tmp_path, trusted_proxy={"from": ["127.0.0.2"]})
    server = start(running, config, tmp_path / "browse.log")
    with nginx(tmp_path / "nginx", users, server.url) as proxy:
        signed_in = httpx.get(f"{proxy}/calls/{calls[0].uuid}", headers=basic(name, PASSWORD), timeout=30)
    with from_address("127.0.0.2", server.url) as direct:
        latin = direct.get("/", headers={b"X-Forwarded-User": "Nguy\xe1n".encode("latin-1")})
        escape = direct.get("/", headers={"X-Forwarded-User": "alice\x1b[2J"})
    stop(server)
    assert signed_in.status_code == 200, signed_in.text
    assert (latin.status_code, escape.status_code) == (403, 403)
    assert [e["user"] for e in trail(tmp_path / "archive")] == [name]
    shown = run_cli("access", "-c", str(config), "--user", name)
    assert shown.returncode == 0, shown.stderr
    assert name in shown.stdout


# -- guessing passwords -----------------------------------------------------------------------------


async def test_parallel_guesses_are_no_faster_than_serial_ones(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """The backoff slept only after a wrong answer, so 150 guesses sent at once were all checked:
    the right one was found in 0.41 s. Now one address's guesses are checked one at a time, and a
    failure closes the address before the next is checked: of 150 at once, only as many are
    checked as a patient guesser waiting out each backoff (1 s, 2 s, 4 s …) would have had."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD}, cost=5)
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(150)]
    ready = threading.Barrier(150)

    def guess(n: int) -> int:
        ready.wait()
        return clients[n].get("/", headers=basic("alice", f"guess-{n}")).status_code

    began = time.monotonic()
    with ThreadPoolExecutor(150) as pool:
        statuses = Counter(pool.map(guess, range(150)))
    took = time.monotonic() - began
    for client in clients:
        client.close()
    stop(server)
    assert set(statuses) <= {401, 429, 503}, statuses  # wrong, closed, or past the connection limit
    assert statuses[401] <= 1 + math.floor(math.log2(1 + took)), (statuses, took)  # checked at 0 s, 1 s, 3 s, 7 s …


async def test_guessing_one_name_from_many_addresses_is_slowed_too(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """Spread over many addresses (every 127/8 address is this machine's), each guess met a fresh
    backoff. Now a name's failures close it for every address it has not signed in from: of 30
    guesses from 30 addresses, one is checked; alice, from the address she signed in from before,
    still gets in at once."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD}, cost=5)
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    with from_address("127.0.0.9", server.url) as own:
        assert own.get("/", headers=basic("alice", PASSWORD)).status_code == 200

    def guess(n: int) -> int:
        with from_address(f"127.0.3.{n + 1}", server.url) as client:
            return client.get("/", headers=basic("alice", f"guess-{n}")).status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = Counter(pool.map(guess, range(30)))
    with from_address("127.0.0.9", server.url) as own:
        still = own.get("/", headers=basic("alice", PASSWORD)).status_code
    stop(server)
    assert statuses == Counter({401: 1, 429: 29}), statuses
    assert still == 200


async def test_a_flood_of_unknown_names_does_not_hold_up_a_real_first_sign_in(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """Unknown names were checked against a cost-12 hash on the shared bcrypt threads, so 120
    wrong logins at once held a real first login back 13 s. Now an unknown name costs no CPU (the
    answer waits as long as a check of the file's cost would take): alice, signing in for the
    first time while 120 addresses flood the desk with unknown names, is in within a second (trying
    again while the desk answers 503, past its 64 connections at once)."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD}, cost=5)
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    flooders = [from_address(f"127.0.4.{n + 1}", server.url) for n in range(120)]
    alice = from_address("127.0.0.5", server.url)
    ready = threading.Barrier(121)

    def flood(n: int) -> int:
        ready.wait()
        # Each wrong sign-in closes its connection: kept alive, 64 idle connections would fill the
        # desk's limit for uvicorn's keep-alive timeout (5 s), which is the connection limit, not
        # the sign-in's cost, and is the proxy's to meter per client (README, the desk's limits).
        return flooders[n].get("/", headers={**basic(f"nobody-{n}", "x"), "Connection": "close"}).status_code

    with ThreadPoolExecutor(120) as pool:
        flooding = [pool.submit(flood, n) for n in range(120)]
        ready.wait()
        time.sleep(0.05)  # the flood is on
        began = time.monotonic()
        first = 503
        while first == 503 and time.monotonic() - began < 1.0:  # past 64 connections at once: try again
            first = alice.get("/", headers=basic("alice", PASSWORD)).status_code
        took = time.monotonic() - began
        statuses = Counter(f.result() for f in flooding)
    for client in [*flooders, alice]:
        client.close()
    stop(server)
    assert first == 200
    assert took < 1.0, took
    assert set(statuses) <= {401, 503}, statuses


async def test_an_unknown_name_takes_as_long_as_a_known_one(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A name the users file lacks was checked against a cost-12 hash, a known one (htpasswd -B:
    cost 5) against its own, so the answer's time told the two apart (0.2 s against 3 ms). Now an
    unknown name's answer takes as long as a check of the file's usual cost."""
    names = [f"auditor{n}" for n in range(20)]
    users = htpasswd(tmp_path / "users", dict.fromkeys(names, PASSWORD), cost=5)
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    known: list[float] = []
    unknown: list[float] = []
    for n, name in enumerate(names):
        for times, who, address in ((known, name, f"127.0.5.{n + 1}"), (unknown, f"stranger{n}", f"127.0.6.{n + 1}")):
            with from_address(address, server.url) as client:
                client.get("/days")  # the connection is made before the clock starts
                began = time.perf_counter()
                assert client.get("/", headers=basic(who, "wrong")).status_code == 401
                times.append(time.perf_counter() - began)
    stop(server)
    known_ms, unknown_ms = statistics.median(known) * 1000, statistics.median(unknown) * 1000
    assert abs(known_ms - unknown_ms) < 30.0, (known_ms, unknown_ms)  # it was 230 ms


# -- plays and the trail ----------------------------------------------------------------------------

NINES = "9" * 5000


def range_cases(size: int) -> list[tuple[dict[str, str], int, slice, bool]]:
    """(request headers, status, the bytes served, recorded as a play)."""
    half = size // 2
    whole = slice(0, size)
    return [
        ({}, 200, whole, True),
        ({"Range": "bytes=0-"}, 206, whole, True),
        ({"Range": "bytes=00-"}, 206, whole, True),
        ({"Range": "bytes=000000000000000000000000000000000-"}, 206, whole, True),
        ({"Range": "bytes=0-0"}, 206, slice(0, 1), True),  # the first byte
        ({"Range": "bytes=-999999999"}, 206, whole, True),  # a suffix longer than the recording
        ({"Range": f"bytes=-{NINES}"}, 206, whole, True),
        ({"Range": f"bytes=0-{NINES}"}, 206, whole, True),  # 5,000 digits: no longer a 500
        ({"Range": "bytes=1-"}, 206, slice(1, size), True),  # most of it
        ({"Range": f"bytes={size - half}-"}, 206, slice(size - half, size), True),  # half
        ({"Range": f"bytes={size - half + 1}-"}, 206, slice(size - half + 1, size), False),  # less than half
        ({"Range": "bytes=1-10"}, 206, slice(1, 11), False),
        ({"Range": "bytes=-10"}, 206, slice(size - 10, size), False),
        ({"Range": "Bytes=0-9"}, 206, slice(0, 10), True),  # the unit in any case
        ({"Range": "bytes=0-10,20-30"}, 200, whole, True),  # several ranges: the whole recording
        ({"Range": "bytes=5-10,8-20"}, 200, whole, True),  # overlapping
        ({"Range": "bytes=1-10,1-10"}, 200, whole, True),
        ({"Range": "bytes=5-1"}, 200, whole, True),  # not a valid range: ignored
        ({"Range": "bytes=abc"}, 200, whole, True),
        ({"Range": "items=0-10"}, 200, whole, True),  # another unit
        ({"Range": "bytes=1-10", "If-Range": '"x"'}, 200, whole, True),  # no validator matches
        ({"Range": f"bytes={NINES}-"}, 416, slice(0, 0), False),
        ({"Range": f"bytes={size}-"}, 416, slice(0, 0), False),
        ({"Range": "bytes=-0"}, 416, slice(0, 0), False),
    ]


async def test_a_play_is_recorded_for_any_range_that_yields_the_start_or_most_of_the_recording(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A play was recorded only when Range began ``bytes=0-``: ``bytes=00-``, ``bytes=-999999999``
    and ``bytes=1-`` downloaded everything unrecorded, and a 5,000-digit end was a 500. Now each
    answer is weighed by the bytes it served: one that includes the first byte, or half of the
    recording or more, is a play (each form below by a user of its own, so that no play is
    counted as the seek of another)."""
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording and c.duration >= 2)
    body = sim.dataset.recording_bytes(call)
    cases = range_cases(len(body))
    users = htpasswd(tmp_path / "users", {f"u{n}": PASSWORD for n in range(len(cases))})
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    log = tmp_path / "browse.log"
    server = start(running, config, log)
    answers = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n, (headers, _, _, _) in enumerate(cases):
            answers.append(client.get(f"/calls/{call.uuid}/audio", headers={**basic(f"u{n}", PASSWORD), **headers}))
    stop(server)
    played = {e["user"] for e in trail(tmp_path / "archive") if e["action"] == "play"}
    for n, ((headers, status, served, recorded), answer) in enumerate(zip(cases, answers, strict=True)):
        assert answer.status_code == status, (headers, answer.status_code)
        if status != 416:
            assert answer.content == body[served], headers
        assert (f"u{n}" in played) == recorded, headers
    assert "Traceback" not in log.read_text()


async def test_a_download_in_pieces_is_recorded_once_its_pieces_make_half(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """Pieces that each hold less than half and not the first byte left no trail, however many.
    Now the bytes served to a user of a recording add up: three thirds (from the second byte) are
    one play once they reach half, and forty scattered ten-byte pieces are one play too."""
    call = next(c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording and c.duration >= 3)
    size = len(sim.dataset.recording_bytes(call))
    users = htpasswd(tmp_path / "users", {"thirds": PASSWORD, "scattered": PASSWORD})
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    third = size // 3
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for first, last in ((1, third), (third + 1, 2 * third), (2 * third + 1, size - 1)):
            ranged = {"Range": f"bytes={first}-{last}", **basic("thirds", PASSWORD)}
            assert client.get(f"/calls/{call.uuid}/audio", headers=ranged).status_code == 206
        for n in range(40):
            ranged = {"Range": f"bytes={100 + 50 * n}-{109 + 50 * n}", **basic("scattered", PASSWORD)}
            assert client.get(f"/calls/{call.uuid}/audio", headers=ranged).status_code == 206
    stop(server)
    plays = Counter(e["user"] for e in trail(tmp_path / "archive") if e["action"] == "play")
    assert plays == Counter({"thirds": 1, "scattered": 1})


async def test_an_upper_case_call_id_is_recorded_as_the_call(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """``/calls/ABC…`` was served but recorded as typed, so ``archiver access --call`` missed it.
    Now every event carries the call's canonical (lower-case) id."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config, calls = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    shouted = calls[0].uuid.upper()
    with httpx.Client(base_url=server.url, headers=basic("alice", PASSWORD), timeout=30) as client:
        assert client.get(f"/calls/{shouted}").status_code == 200
        assert client.get(f"/calls/{shouted}/audio").status_code == 200
        assert client.get(f"/calls/{shouted}/files/{calls[0].uuid}.json").status_code == 200
    stop(server)
    found = run_cli("access", "-c", str(config), "--call", calls[0].uuid, "--json")
    assert found.returncode == 0, found.stderr
    assert [(e["action"], e["call_id"]) for e in json.loads(found.stdout)] == [
        ("view", calls[0].uuid),
        ("play", calls[0].uuid),
        ("download", calls[0].uuid),
    ]


async def test_access_shows_no_terminal_escapes_from_the_trail(sim: Simulator, tmp_path: Path) -> None:
    """Anyone who can write to the bucket can put a trail line whose fields hold terminal escape
    codes; ``archiver access`` printed them, so a terminal obeyed them (a retitled window, a
    cleared screen, a forged line). Now control characters are shown as visible escapes; --json
    is JSON."""
    config, calls = await archived(sim, tmp_path)
    forged = {
        "at": "2026-11-02T03:04:05+00:00",
        "user": "mallory\x1b]0;owned\x07\x1b[2J",
        "action": "view\r2026-11-02 alice play",
        "call_id": calls[0].uuid,
        "remote": "10.0.0.1\x1b[8m",
        "via": "browse",
        "file": "x\x9b31m",
    }
    folder = tmp_path / "archive" / "_access" / "2026" / "11" / "02"
    folder.mkdir(parents=True)
    (folder / "030405-forged.jsonl").write_text(json.dumps(forged) + "\n")
    shown = run_cli("access", "-c", str(config))
    as_json = run_cli("access", "-c", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in shown.stdout), repr(shown.stdout)
    assert "mallory\\x1b]0;owned\\x07\\x1b[2J" in shown.stdout
    assert json.loads(as_json.stdout)[0]["user"] == forged["user"]


# -- what a client sends ------------------------------------------------------------------------------


async def test_malformed_logins_are_answered_without_a_traceback(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A non-UTF-8 Basic login, a header that is not ASCII, and a password over 72 bytes were 500s
    with a traceback. Now they are 401s; a long password is checked on its first 72 bytes, as
    ``htpasswd -B`` hashed it."""
    long_password = "p" * 80
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD, "bob": long_password})
    config, _ = await archived(sim, tmp_path, users_file=str(users))
    log = tmp_path / "browse.log"
    server = start(running, config, log)
    statuses = []
    for n, header in enumerate(
        [
            b"Basic " + base64.b64encode(b"\xff\xfe:\xfd"),  # not UTF-8
            b"Basic \xff\xfe\xfd",  # not even ASCII
            b"Basic " + base64.b64encode(b"alice:" + b"x" * 200),  # over 72 bytes, wrong
            b"Basic !!!!",
            b"Bearer abc",
        ]
    ):
        with from_address(f"127.0.7.{n + 1}", server.url) as client:
            statuses.append(client.get("/", headers={b"Authorization": header}).status_code)
    with from_address("127.0.7.99", server.url) as client:
        long = client.get("/", headers=basic("bob", long_password + "ignored past 72 bytes")).status_code
    stop(server)
    assert statuses == [401] * 5
    assert long == 200
    assert "Traceback" not in log.read_text()


async def test_a_huge_header_is_refused_before_it_reaches_a_log_line(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A 70 KB header became a 315 KB log line. Now a header over 8 KiB (or all of them over
    16 KiB) is refused with 431 before anything reads it, and no log line is long."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config, calls = await archived(sim, tmp_path, users_file=str(users))
    log = tmp_path / "browse.log"
    server = start(running, config, log)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        huge_name = client.get("/", headers=basic("m" * 70_000, "x")).status_code
        huge_other = client.get(f"/calls/{calls[0].uuid}", headers={**basic("alice", PASSWORD), "X-Pad": "a" * 70_000})
        many = client.get("/", headers={**basic("alice", PASSWORD), **{f"X-Pad-{n}": "a" * 4000 for n in range(6)}})
    stop(server)
    assert (huge_name, huge_other.status_code, many.status_code) == (431, 431, 431)
    assert max(len(line) for line in log.read_text().splitlines()) < 2000


async def test_a_wildcard_listen_answers_at_the_address_it_is_reached_at(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """``--listen 0.0.0.0:P`` answered every real Host with 421 (it compared Host with 0.0.0.0).
    Now a wildcard listen answers at the address the connection arrived at; another name is
    still refused (a DNS-rebound page), unless browse.tls proves the name."""
    config, calls = await archived(sim, tmp_path, trusted_proxy={"from": ["127.0.0.2"]})
    server = start(running, config, tmp_path / "browse.log", listen="0.0.0.0:0")
    with from_address("127.0.0.2", f"http://127.0.0.1:{server.port}") as proxy:
        by_address = proxy.get(f"/calls/{calls[0].uuid}", headers={"X-Forwarded-User": "alice"})
        by_name = proxy.get(f"http://localhost:{server.port}/days", headers={"X-Forwarded-User": "alice"})
        rebound = proxy.get("/days", headers={"X-Forwarded-User": "alice", "Host": f"attacker.example:{server.port}"})
    stop(server)
    assert (by_address.status_code, by_name.status_code, rebound.status_code) == (200, 200, 421)


async def test_another_site_cannot_make_a_browser_fetch_recordings(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """A page elsewhere could embed a call's audio, file or bundle; an auditor's browser sent its
    saved Basic login with it, and each fetch added a false line to the trail. Now a request for
    a call from another site (Sec-Fetch-Site, or Origin where that is all a browser says) is
    refused, unrecorded; following a link to a call's page from elsewhere still works."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config, calls = await archived(sim, tmp_path, users_file=str(users))
    server = start(running, config, tmp_path / "browse.log")
    call = calls[0].uuid
    embedded = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "audio"}
    followed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    with httpx.Client(base_url=server.url, headers=basic("alice", PASSWORD), timeout=30) as client:
        refused = [
            client.get(f"/calls/{call}/audio", headers=embedded).status_code,
            client.get(f"/calls/{call}/audio", headers={**embedded, "Sec-Fetch-Site": "same-site"}).status_code,
            client.get(f"/calls/{call}/evidence.zip", headers=followed).status_code,  # a download, from elsewhere
            client.get(f"/calls/{call}/files/{call}.json", headers={"Origin": "https://evil.example"}).status_code,
            client.get(f"/calls/{call}", headers={**embedded, "Sec-Fetch-Dest": "image"}).status_code,
            client.get(f"/calls/{call}/audio", headers={"Origin": "null"}).status_code,
        ]
        allowed = [
            client.get(f"/calls/{call}", headers=followed).status_code,
            client.get(f"/calls/{call}/audio", headers={**embedded, "Sec-Fetch-Site": "same-origin"}).status_code,
            client.get(f"/calls/{call}/audio", headers={"Origin": server.url.rstrip("/")}).status_code,
        ]
    stop(server)
    assert refused == [403] * 6
    assert allowed == [200, 200, 200]
    assert [e["action"] for e in trail(tmp_path / "archive")] == ["view", "play"]


async def test_parallel_bundles_stay_within_bounded_memory_and_a_head_builds_none(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """30 evidence.zip downloads of one 20 MB call at once took browse from 46 to 287 MiB, and a
    HEAD built the whole bundle. Now a user has two bundles made at a time (a third is 429, with
    Retry-After), four are made at once in all, each spills to disk past 1 MiB; a HEAD builds none
    and records nothing."""
    users = htpasswd(tmp_path / "users", dict.fromkeys("abc", PASSWORD))
    config, calls = await archived(sim, tmp_path, users_file=str(users))
    call = calls[0]
    audio = tmp_path / "archive" / f"{call.start:%Y/%m/%d}" / f"{call.uuid}.wav"
    audio.write_bytes(audio.read_bytes()[:44] + bytes(20_000_000))  # a 20 MB recording
    log = tmp_path / "browse.log"
    server = start(running, config, log)
    url = f"/calls/{call.uuid}/evidence.zip"
    with httpx.Client(base_url=server.url, timeout=120) as client:
        head = client.head(url, headers=basic("a", PASSWORD))
        assert client.get(url, headers=basic("a", PASSWORD)).status_code == 200  # everything loaded once
    before = _memory(server.process.pid)["VmRSS"]

    def download(user: str) -> int:
        with (
            httpx.Client(base_url=server.url, timeout=120) as client,
            client.stream("GET", url, headers=basic(user, PASSWORD)) as answer,
        ):
            for _ in answer.iter_bytes(1 << 20):
                pass
            return answer.status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = Counter(pool.map(download, ["a", "b", "c"] * 10))
    peak = _memory(server.process.pid)["VmHWM"]
    stop(server)
    assert head.status_code == 200
    assert head.headers["content-type"] == "application/zip"
    assert statuses[200] >= 6, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert peak - before < 64 << 10, (before, peak)  # KiB
    built = log_lines(log, "browse.bundle_built")
    assert len(built) == 1 + statuses[200]  # the HEAD built none
    assert Counter(e["action"] for e in trail(tmp_path / "archive"))["evidence"] == 1 + statuses[200]


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in ("VmRSS", "VmHWM")}


# -- TLS ----------------------------------------------------------------------------------------------


async def test_basic_over_plain_http_off_loopback_is_refused(
    sim: Simulator, tmp_path: Path, running: list[Browse]
) -> None:
    """With a users file, browse listened on any address over plain HTTP, so every Basic login
    crossed the network in clear. Now a listen off loopback with users_file needs browse.tls (exit
    2 naming it); with it, browse speaks HTTPS only, with the certificate it was given."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config, calls = await archived(sim, tmp_path, users_file=str(users))
    refused = run_cli("--log-format", "console", "browse", "-c", str(config), "--listen", "0.0.0.0:0", timeout=60)
    assert refused.returncode == 2
    assert "browse.tls" in refused.stderr
    assert "in clear" in refused.stderr

    ca = trustme.CA()
    served = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    served.cert_chain_pems[0].write_to_path(str(cert))
    served.private_key_pem.write_to_path(str(key))
    tls = write_config(
        tmp_path / "tls.yaml",
        {
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "browse": {"users_file": str(users), "tls": {"cert": str(cert), "key": str(key)}},
        },
    )
    server = start(running, tls, tmp_path / "browse.log", listen="0.0.0.0:0")
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    with httpx.Client(verify=trusted, timeout=30) as client:
        page = client.get(f"https://127.0.0.1:{server.port}/calls/{calls[0].uuid}", headers=basic("alice", PASSWORD))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.port}/", headers=basic("alice", PASSWORD), timeout=10)
    stop(server)
    assert server.url.startswith("https://")
    assert page.status_code == 200

    key.write_text("not a key\n")
    broken = run_cli("--log-format", "console", "browse", "-c", str(tls), "--listen", "0.0.0.0:0", timeout=60)
    assert broken.returncode == 2
    assert "browse.tls" in broken.stderr
    assert "Traceback" not in broken.stderr


# -- bounded tables ----------------------------------------------------------------------------------


def test_the_failed_login_tables_stay_bounded() -> None:
    """Every failed name and address was kept for good, so a flood of random names grew the
    table without end. Now at most 10,000 keys are kept (the least recently failed forgotten),
    and a key is forgotten 15 minutes after its last failure."""
    clock = [0.0]
    throttle = Throttle(lambda: clock[0])
    for n in range(MAX_KEYS + 5000):
        throttle.failed(f"name-{n}")
    assert len(throttle) == MAX_KEYS
    assert throttle.closed_for("name-0") == 0.0  # forgotten first
    assert throttle.closed_for(f"name-{MAX_KEYS + 4999}") > 0
    clock[0] = 2000.0
    assert throttle.closed_for(f"name-{MAX_KEYS + 4999}") == 0.0
    assert throttle.failed(f"name-{MAX_KEYS + 4999}") == 1  # a fresh start


class RefusingStore(LocalStore):
    """A folder the trail may not write to (credentials that may only read)."""

    async def put(self, key: str, *args: Any, **kwargs: Any) -> None:
        raise StoreAccessError(f"AccessDenied writing {key}")


async def test_the_unwritten_trail_stays_bounded(tmp_path: Path) -> None:
    """Events a store refused stayed in memory for the next try, without end. Now at most 10,000
    are kept (each is in its log line too), the oldest dropped first with an error saying how many."""
    clock = FakeClock(datetime(2026, 11, 2, 9, tzinfo=UTC))
    trail_ = AccessTrail(RefusingStore(tmp_path), "archive", clock)
    with capture_logs() as logs:
        for n in range(MAX_PENDING + 2500):
            trail_.record(user="alice", action="view", call_id=f"c{n}", remote="127.0.0.1", via="browse")
        await trail_.flush()
    assert trail_.pending == MAX_PENDING
    dropped = [e for e in logs if e["event"] == "access.trail_dropped"]
    assert sum(e["events"] for e in dropped) == 2500
