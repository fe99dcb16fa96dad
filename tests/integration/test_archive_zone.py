"""Every writer of seals states the archive's zone, the one its seals state: a configuration that
names none files, seals and reckons in the seals' zone; one that names another is refused, naming
both zones and ``source.timezone``, before anything is written (exit 2 on the command line); seals
that state two zones stop expire. An archive whose seals state none takes the configured zone (or
the default) as before. Folder archives filed in America/Los_Angeles; the simulator's and the
default zone is Asia/Ho_Chi_Minh."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archiver.archive.seal import Sealer
from archiver.audit.verify import Verifier
from archiver.core.seal import Seal, seal_key
from archiver.errors import EXIT_USAGE, ConfigError
from archiver.lifecycle.erase import Eraser
from archiver.lifecycle.expire import Expirer
from archiver.simulator import Simulator
from archiver.store import Store, put_bytes
from archiver.store.listing import archive_days, list_day
from archiver.store.local import LocalStore
from archiver.store.seals import read_chain
from tests.helpers import TZ, FakeClock, backfill, config_dict, config_for, local_objects, run_cli, write_config

pytestmark = pytest.mark.anyio
LA = ZoneInfo("America/Los_Angeles")
STORED = datetime(2026, 11, 5, 9, tzinfo=UTC)
FIRST = date(2026, 11, 1)
ANOTHER = "Asia/Ho_Chi_Minh"


async def la_archive(sim: Simulator, tmp_path: Path) -> Path:
    """A folder archive of 2026-11-01 in Los Angeles, closed and sealed (its seals state the zone)."""
    root = tmp_path / "archive"
    config = config_for(sim, f"file://{root}", tmp_path, source={"timezone": "America/Los_Angeles"})
    await backfill(config, datetime(2026, 11, 1, tzinfo=LA), datetime(2026, 11, 2, tzinfo=LA), clock=FakeClock(STORED))
    assert (await read_chain(LocalStore(root), "")).timezone == "America/Los_Angeles"
    return root


def expirer(store: Store, clock: FakeClock, tz: ZoneInfo | None) -> Expirer:
    sealer = Sealer(store, "", clock)
    return Expirer(store, "", tz=tz, keep=timedelta(days=30), policy="30d", clock=clock, sealer=sealer)


def assert_refused_naming_both(refusal: ConfigError, named: str) -> None:
    said = str(refusal)
    assert f"At 'source.timezone': it names {named}, but the seals of " in said
    assert "state that its days are filed in America/Los_Angeles" in said
    assert said.endswith("nothing was written")


@pytest.mark.parametrize("named", [None, "America/Los_Angeles"], ids=["names-none", "names-the-seals-zone"])
async def test_an_erase_states_the_archives_zone(sim: Simulator, tmp_path: Path, named: str | None) -> None:
    """A call erased with a configuration naming no zone (a storage-only one) or the seals' own:
    the addendum's seal states America/Los_Angeles, expire reads the days there, verify is clean."""
    root = await la_archive(sim, tmp_path)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    eraser = Eraser(store, "", tz=ZoneInfo(named) if named else None, clock=FakeClock(STORED))
    await eraser.erase(call_id, "DSR-7", bypass_governance=False, dry_run=False)
    chain = await read_chain(store, "")
    assert chain.timezones() == {"America/Los_Angeles": sorted(chain.seals)}
    assert (await expirer(store, FakeClock(STORED), None).zone()) == LA
    assert (await Verifier(store, "", clock=FakeClock(STORED)).verify(None)).problems == []


async def test_an_erase_with_a_configuration_naming_another_zone_writes_nothing(sim: Simulator, tmp_path: Path) -> None:
    """A configuration naming Asia/Ho_Chi_Minh, the archive's seals Los Angeles: ConfigError naming
    both, and not a byte written (no revision, no seal)."""
    root = await la_archive(sim, tmp_path)
    before = local_objects(root)
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    with pytest.raises(ConfigError) as refusal:
        await Eraser(store, "", tz=ZoneInfo(ANOTHER), clock=FakeClock(STORED)).erase(
            call_id, "DSR-7", bypass_governance=False, dry_run=False
        )
    assert_refused_naming_both(refusal.value, ANOTHER)
    assert local_objects(root) == before


async def test_the_erase_command_with_a_configuration_naming_no_zone_states_the_seals(
    sim: Simulator, tmp_path: Path
) -> None:
    """``archiver erase`` with a storage-only configuration (no source.timezone): the seal it
    writes states the archive's zone, not the default."""
    root = await la_archive(sim, tmp_path)
    call_id = next(iter((await list_day(LocalStore(root), "", FIRST)).audio))
    config = write_config(tmp_path, {"storage": {"url": f"file://{root}"}})
    done = run_cli("erase", "-c", str(config), call_id, "--reason", "DSR-7")
    assert done.returncode == 0, done.stderr
    chain = await read_chain(LocalStore(root), "")
    assert chain.timezones() == {"America/Los_Angeles": sorted(chain.seals)}


async def test_a_backfill_with_a_configuration_naming_another_zone_writes_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    """The operator's configuration names Asia/Ho_Chi_Minh for an archive filed in Los Angeles:
    the backfill is refused before anything is written, naming both zones."""
    root = await la_archive(sim, tmp_path)
    before = local_objects(root)
    moved = config_for(sim, f"file://{root}", tmp_path, source={"timezone": ANOTHER})
    with pytest.raises(ConfigError) as refusal:
        await backfill(moved, datetime(2026, 11, 2, tzinfo=TZ), datetime(2026, 11, 3, tzinfo=TZ), FakeClock(STORED))
    assert_refused_naming_both(refusal.value, ANOTHER)
    assert local_objects(root) == before


async def test_a_backfill_with_a_configuration_naming_no_zone_files_in_the_seals_zone(
    sim: Simulator, tmp_path: Path
) -> None:
    """``source.timezone`` dropped from the configuration (which reads as the default zone): the
    next days are filed and sealed in the seals' zone, and verify finds nothing wrong."""
    root = await la_archive(sim, tmp_path)
    unnamed = config_for(sim, f"file://{root}", tmp_path)
    assert unnamed.source.tz_given is None
    await backfill(unnamed, datetime(2026, 11, 2, tzinfo=LA), datetime(2026, 11, 3, tzinfo=LA), FakeClock(STORED))
    store = LocalStore(root)
    assert await archive_days(store, "") == [date(2026, 11, 1), date(2026, 11, 2)]
    chain = await read_chain(store, "")
    assert len(chain.seals) >= 2
    assert chain.timezones() == {"America/Los_Angeles": sorted(chain.seals)}
    assert (await Verifier(store, "", clock=FakeClock(STORED)).verify(None)).problems == []


async def test_the_commands_that_write_exit_2_on_a_configuration_naming_another_zone(
    sim: Simulator, tmp_path: Path
) -> None:
    """run, backfill, rearchive, reconcile, erase and expire on the command line, the configuration naming another
    zone than the seals: exit 2, the message naming both zones and source.timezone, no traceback,
    nothing written; ``check`` says it as a FAIL line, and exits 2."""
    root = await la_archive(sim, tmp_path)
    before = local_objects(root)
    call_id = next(iter((await list_day(LocalStore(root), "", FIRST)).audio))
    raw = config_dict(
        api=sim, storage=f"file://{root}", state=tmp_path / "ledger.sqlite3", source={"timezone": ANOTHER}
    )
    config = str(write_config(tmp_path, raw | {"retention": {"keep": "1d"}}))
    for command in (
        ("run", "-c", config),
        ("backfill", "-c", config, "--since", "2026-11-02", "--until", "2026-11-03"),
        ("rearchive", "-c", config, "--since", "2026-11-01", "--until", "2026-11-02"),
        ("reconcile", "-c", config, "--since", "2026-11-01", "--until", "2026-11-02"),
        ("erase", "-c", config, call_id, "--reason", "DSR-12"),
        ("expire", "-c", config),
    ):
        result = run_cli(*command, timeout=60)
        assert result.returncode == EXIT_USAGE, (command, result.stderr)
        assert f"At 'source.timezone': it names {ANOTHER}, but the seals of" in result.stderr, command
        assert "America/Los_Angeles" in result.stderr
        assert "Traceback" not in result.stderr
    assert local_objects(root) == before
    checked = run_cli("check", "-c", config)
    assert checked.returncode == EXIT_USAGE
    assert (
        f"FAIL  time zone: source.timezone says {ANOTHER}, the archive's seals say its days are filed in "
        "America/Los_Angeles" in checked.stdout
    ), checked.stdout


async def test_expire_refuses_an_archive_whose_seals_state_two_zones(sim: Simulator, tmp_path: Path) -> None:
    """Seals stating two zones (an archive written under two configurations before this rule):
    which zone a day is filed in cannot be known, so expire refuses, naming both zones and their
    seals, whatever the configuration names, and records nothing."""
    root = await la_archive(sim, tmp_path)
    store = LocalStore(root)
    # What an archiver before this rule wrote under a configuration naming UTC: a seal stating it
    # (today's Sealer refuses to write it, so it is written as that archiver wrote it).
    chain = await read_chain(store, "")
    forged = Seal.new(chain.length + 1, {"2026/11/02/manifest-1.json": "0" * 64}, chain.head, STORED, timezone="UTC")
    await put_bytes(store, seal_key("", chain.length + 1), forged.to_bytes(), "application/json")
    seals = len((await read_chain(store, "")).seals)
    for named in (None, LA, ZoneInfo("UTC")):
        with pytest.raises(ConfigError) as refusal:
            await expirer(store, FakeClock(STORED + timedelta(days=60)), named).run()
        said = str(refusal.value)
        assert "state two zones its days were filed in (America/Los_Angeles in " in said
        assert f"UTC in 1 seal(s), {seals} to {seals}" in said
    assert len((await read_chain(store, "")).seals) == seals


async def test_a_sealer_told_another_zone_than_the_chains_writes_no_seal(sim: Simulator, tmp_path: Path) -> None:
    """A writer that started without reading the seals (the store did not answer then) and was
    told another zone: the seal it would write is refused where the chain's head is read, naming
    both zones, and the chain keeps stating one zone."""
    root = await la_archive(sim, tmp_path)
    store = LocalStore(root)
    seals = (await read_chain(store, "")).length
    with pytest.raises(ConfigError) as refusal:
        await Sealer(store, "", FakeClock(STORED), timezone=ANOTHER).seal({"2026/11/02/manifest-1.json": "0" * 64})
    assert_refused_naming_both(refusal.value, ANOTHER)
    assert (await read_chain(store, "")).length == seals


async def test_a_seal_stating_a_zone_unknown_here_is_a_clear_refusal_and_a_verify_problem(
    sim: Simulator, tmp_path: Path
) -> None:
    """A seal stating a zone this machine's tzdata does not know (written by someone else, or on a
    newer system): writers stop with a ConfigError naming it, never a traceback, and verify names
    it as a problem."""
    root = await la_archive(sim, tmp_path)
    for path in (root / "seals").iterdir():
        path.unlink()
    store = LocalStore(root)
    forged = Seal.new(1, {}, None, STORED, timezone="Mars/Olympus_Mons")
    await put_bytes(store, seal_key("", 1), forged.to_bytes(), "application/json")
    with pytest.raises(ConfigError, match="'Mars/Olympus_Mons', a zone this machine's time zone database does not"):
        await expirer(store, FakeClock(STORED + timedelta(days=60)), None).run()
    report = await Verifier(store, "", clock=FakeClock(STORED)).verify(None)
    assert any("'Mars/Olympus_Mons', unknown here" in p.what for p in report.problems), report.problems


async def test_an_erase_on_an_archive_whose_zone_nothing_states_seals_no_guessed_zone(
    sim: Simulator, tmp_path: Path
) -> None:
    """An archive from before seals stated zones (here: before seals), erased with a configuration
    naming no zone: the call is found in the default zone, but the seal the erase writes states no
    zone, so that expire still refuses to guess one later."""
    root = await la_archive(sim, tmp_path)
    for path in (root / "seals").iterdir():
        path.unlink()
    store = LocalStore(root)
    call_id = next(iter((await list_day(store, "", FIRST)).audio))
    await Eraser(store, "", tz=None, clock=FakeClock(STORED)).erase(
        call_id, "DSR-11", bypass_governance=False, dry_run=False
    )
    chain = await read_chain(store, "")
    assert chain.length >= 1
    assert chain.timezone is None
