"""One desk for every source, with scopes: who may see which calls. Two sources (hq and danang,
two simulated PBXs) archived into one folder; a real browse in a subprocess; users signed in by a
users file (groups in its third field) or by a proxy (groups in a header)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from archiver.simulator import Dataset, SimCall, Simulator
from tests.desk import PASSWORD, basic, from_address, htpasswd, trail
from tests.helpers import SINCE, UNTIL, Browse, backfill, config_for, run_cli, write_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def danang() -> Iterator[Simulator]:
    """A second PBX, with calls of its own."""
    with Simulator(Dataset(seed=11, calls_per_day=30, max_duration=6), seed=11) as server:
        yield server


def recorded(sim: Simulator) -> list[SimCall]:
    return [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording]


async def two_sources(hq: Simulator, danang: Simulator, tmp_path: Path, browse: dict[str, Any]) -> Path:
    """Both PBXs archived under one folder (``hq/`` and ``danang/``); an auditor's config naming
    both sources, with *browse*."""
    root = tmp_path / "archive"
    await backfill(config_for(hq, f"file://{root}/hq", tmp_path / "hq"))
    await backfill(config_for(danang, f"file://{root}/danang", tmp_path / "danang"))
    raw = {"sources": [{"name": "hq"}, {"name": "danang"}], "storage": {"url": f"file://{root}"}, "browse": browse}
    return write_config(tmp_path / "auditor.yaml", raw)


def extension_of(calls: list[SimCall]) -> tuple[str, list[SimCall], list[SimCall]]:
    """An extension some of *calls* involve: it, those calls, and the others."""
    counts: dict[str, int] = {}
    for c in calls:
        for number in (c.source, c.destination):
            if len(number) <= 4:
                counts[number] = counts.get(number, 0) + 1
    extension = max(counts, key=lambda e: counts[e])
    mine = [c for c in calls if extension in (c.source, c.destination)]
    return extension, mine, [c for c in calls if c not in mine]


def page_text(answer: httpx.Response, *ids: str) -> str:
    """An answer's body with the call ids in it blanked, to compare two answers' shapes."""
    text = answer.text
    for call_id in ids:
        text = text.replace(call_id, "CALL")
    return text


async def test_several_sources_with_a_login_and_no_scopes_refuse_to_start(
    sim: Simulator, danang: Simulator, tmp_path: Path
) -> None:
    """A desk over two sources that signs people in must say who sees what: without browse.scopes
    it does not start (exit 2, naming the key and how to write it)."""
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD})
    config = await two_sources(sim, danang, tmp_path, {"users_file": str(users)})
    result = run_cli("--log-format", "console", "browse", "-c", str(config), "--listen", "127.0.0.1:0", timeout=60)
    assert result.returncode == 2
    assert "browse.scopes" in result.stderr
    assert '"*": all' in result.stderr
    assert "Traceback" not in result.stderr


async def test_each_user_sees_the_calls_of_their_scope_and_nothing_else(
    sim: Simulator, danang: Simulator, tmp_path: Path
) -> None:
    """alice may see hq, the qa group (bob) danang, carol hq's calls of one extension. Outside a
    user's scope every URL is 404, as for a call that does not exist (the same page); search,
    days, calls, audio, files and bundles keep to it; each event lands in its source's trail with
    the scope that let the user see it; ``archiver access --as`` shows each user's share."""
    hq_calls, dn_calls = recorded(sim), recorded(danang)
    extension, carols, not_carols = extension_of(hq_calls)
    users = htpasswd(tmp_path / "users", dict.fromkeys(("alice", "bob", "carol"), PASSWORD), groups={"bob": "qa,night"})
    scopes = {"alice": ["hq"], "group:qa": ["danang"], "carol": [f"hq/{extension}"]}
    config = await two_sources(sim, danang, tmp_path, {"users_file": str(users), "scopes": scopes})
    server = Browse(config, tmp_path / "browse.log")
    hq_call, dn_call = hq_calls[0], dn_calls[0]
    nowhere = "0123abcd-0000-4000-8000-000000000000"
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            alice, bob, carol = (basic(u, PASSWORD) for u in ("alice", "bob", "carol"))
            seen = {
                "alice hq": client.get(f"/calls/{hq_call.uuid}", headers=alice).status_code,
                "alice hq audio": client.get(f"/calls/{hq_call.uuid}/audio", headers=alice).status_code,
                "bob danang": client.get(f"/calls/{dn_call.uuid}", headers=bob).status_code,
                "bob danang bundle": client.get(f"/calls/{dn_call.uuid}/evidence.zip", headers=bob).status_code,
                "carol's extension": client.get(f"/calls/{carols[0].uuid}", headers=carol).status_code,
            }
            unseen = {
                "alice danang": client.get(f"/calls/{dn_call.uuid}", headers=alice),
                "alice danang named": client.get(f"/calls/{dn_call.uuid}?source=danang", headers=alice),
                "alice danang audio": client.get(f"/calls/{dn_call.uuid}/audio", headers=alice),
                "alice danang file": client.get(f"/calls/{dn_call.uuid}/files/{dn_call.uuid}.json", headers=alice),
                "alice danang bundle": client.get(f"/calls/{dn_call.uuid}/evidence.zip", headers=alice),
                "alice danang days": client.get("/days?source=danang", headers=alice),
                "alice danang day": client.get(f"/days/{dn_call.start:%Y-%m-%d}?source=danang", headers=alice),
                "bob hq": client.get(f"/calls/{hq_call.uuid}", headers=bob),
                "carol another hq call": client.get(f"/calls/{not_carols[0].uuid}", headers=carol),
                "carol another's audio": client.get(f"/calls/{not_carols[0].uuid}/audio", headers=carol),
            }
            missing = client.get(f"/calls/{nowhere}", headers=alice)
            found_by_alice = client.get("/", params={"number": dn_call.destination}, headers=alice).text
            found_by_bob = client.get("/", params={"number": dn_call.destination}, headers=bob).text
            carol_day = client.get(f"/days/{carols[0].start:%Y-%m-%d}", headers=carol).text
            carol_days = client.get("/days", headers=carol).text
            alice_days = client.get("/days", headers=alice).text
    finally:
        assert server.close() == 0
    assert set(seen.values()) == {200}, seen
    assert {k: a.status_code for k, a in unseen.items()} == dict.fromkeys(unseen, 404)
    assert page_text(unseen["alice danang"], dn_call.uuid) == page_text(missing, nowhere)  # no oracle
    assert dn_call.uuid not in found_by_alice
    assert dn_call.uuid in found_by_bob
    assert all(c.uuid in carol_day for c in carols if c.start.date() == carols[0].start.date())
    assert not any(c.uuid in carol_day for c in not_carols)
    assert "danang" not in alice_days  # one source seen: no other is named
    day = carols[0].start.date()
    cell = re.search(rf'href="/days/{day:%Y-%m-%d}[^"]*" title="[^"]*: (\d+) call', carol_days)
    assert cell is not None
    assert int(cell.group(1)) == sum(
        1 for c in _all_calls(sim) if extension in (c.source, c.destination) and c.start.date() == day
    )

    events = trail(tmp_path / "archive")
    assert {(e["user"], e["source"], e["scope"]) for e in events} == {
        ("alice", "hq", "hq (alice)"),
        ("bob", "danang", "danang (group:qa)"),
        ("carol", "hq", f"hq/{extension} (carol)"),
    }
    assert all(e["call_id"] != dn_call.uuid or e["user"] == "bob" for e in events)
    hq_trail = list((tmp_path / "archive" / "hq" / "_access").rglob("*.jsonl"))
    dn_trail = list((tmp_path / "archive" / "danang" / "_access").rglob("*.jsonl"))
    assert hq_trail
    assert dn_trail
    as_bob = json.loads(run_cli("access", "-c", str(config), "--as", "bob", "--json").stdout)
    as_carol = json.loads(run_cli("access", "-c", str(config), "--as", "carol", "--json").stdout)
    everything = json.loads(run_cli("access", "-c", str(config), "--json").stdout)
    assert {e["call_id"] for e in as_bob} == {dn_call.uuid}
    assert {e["call_id"] for e in as_carol} == {carols[0].uuid}
    assert {e["call_id"] for e in everything} == {hq_call.uuid, dn_call.uuid, carols[0].uuid}


def _all_calls(sim: Simulator) -> list[SimCall]:
    return list(sim.dataset.calls_between(SINCE, UNTIL, sim.now()))


async def test_a_group_the_proxy_names_grants_its_scope_and_a_star_grants_everyone(
    sim: Simulator, danang: Simulator, tmp_path: Path
) -> None:
    """Behind a proxy, the groups come from its X-Forwarded-Groups header: erin in qa sees danang
    and not hq. ``"*": all`` lets everyone signed in see every source."""
    proxy = {"from": ["127.0.0.2"], "groups_header": "X-Forwarded-Groups"}
    config = await two_sources(sim, danang, tmp_path, {"trusted_proxy": proxy, "scopes": {"group:qa": ["danang"]}})
    server = Browse(config, tmp_path / "browse.log")
    hq_call, dn_call = recorded(sim)[0], recorded(danang)[0]
    try:
        with from_address("127.0.0.2", server.url) as client:
            erin = {"X-Forwarded-User": "erin", "X-Forwarded-Groups": "sales, qa"}
            statuses = (
                client.get(f"/calls/{dn_call.uuid}", headers=erin).status_code,
                client.get(f"/calls/{hq_call.uuid}", headers=erin).status_code,
                client.get(f"/calls/{dn_call.uuid}", headers={"X-Forwarded-User": "frank"}).status_code,
            )
    finally:
        assert server.close() == 0
    assert statuses == (200, 404, 404)
    everyone = write_config(
        tmp_path / "everyone.yaml",
        {**_yaml(config), "browse": {"trusted_proxy": proxy, "scopes": {"*": "all"}}},
    )
    server = Browse(everyone, tmp_path / "browse-2.log")
    try:
        with from_address("127.0.0.2", server.url) as client:
            frank = {"X-Forwarded-User": "frank"}
            both = (
                client.get(f"/calls/{dn_call.uuid}", headers=frank).status_code,
                client.get(f"/calls/{hq_call.uuid}", headers=frank).status_code,
            )
    finally:
        assert server.close() == 0
    assert both == (200, 200)


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded
