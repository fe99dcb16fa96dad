"""The scheduled commands' results as a textfile, and the daemon's reading of a folder of them."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from archiver.config.load import parse_config
from archiver.service.results import CommandResults, write_result


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def served(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(CommandResults(folder))
    return samples(generate_latest(registry).decode())


def cmd(name: str) -> tuple[tuple[str, str], ...]:
    return (("command", name),)


def test_a_run_that_ended_well_is_written_in_the_text_format(tmp_path: Path) -> None:
    """Exit code, end, duration and the success time, in a file the text-format parser reads; the
    folder is made when missing, and no temporary file stays beside it."""
    path = tmp_path / "metrics" / "verify.prom"
    write_result(path, "verify", started=1000.0, finished=1084.5, exit_code=0)
    found = samples(path.read_text())
    assert found[("archiver_command_last_exit_code", cmd("verify"))] == 0
    assert found[("archiver_command_last_run_timestamp_seconds", cmd("verify"))] == 1084.5
    assert found[("archiver_command_last_duration_seconds", cmd("verify"))] == 84.5
    assert found[("archiver_command_last_success_timestamp_seconds", cmd("verify"))] == 1084.5
    assert os.listdir(path.parent) == ["verify.prom"]


def test_a_failed_run_keeps_the_last_success_of_the_file_it_replaces(tmp_path: Path) -> None:
    """A run that fails says so, and when the command last succeeded is carried over."""
    path = tmp_path / "verify.prom"
    write_result(path, "verify", started=1000.0, finished=1010.0, exit_code=0)
    write_result(path, "verify", started=90000.0, finished=90050.0, exit_code=1)
    found = samples(path.read_text())
    assert found[("archiver_command_last_exit_code", cmd("verify"))] == 1
    assert found[("archiver_command_last_run_timestamp_seconds", cmd("verify"))] == 90050.0
    assert found[("archiver_command_last_success_timestamp_seconds", cmd("verify"))] == 1010.0


def test_a_command_that_never_succeeded_has_no_success_time(tmp_path: Path) -> None:
    """Failing from the first run on (or over an unreadable file), no success is invented."""
    path = tmp_path / "expire.prom"
    path.write_text("not the text format {{{\n")
    write_result(path, "expire", started=5.0, finished=6.0, exit_code=2)
    found = samples(path.read_text())
    assert found[("archiver_command_last_exit_code", cmd("expire"))] == 2
    assert not any(name == "archiver_command_last_success_timestamp_seconds" for name, _ in found)


def test_the_daemon_serves_every_result_file_of_its_folder(tmp_path: Path) -> None:
    """verify's, reconcile's and expire's files are merged into one family each; other files'
    families are not served; files that are not the text format, or far too large to be a result,
    are counted instead."""
    write_result(tmp_path / "verify.prom", "verify", started=1.0, finished=2.0, exit_code=0)
    write_result(tmp_path / "reconcile.prom", "reconcile", started=1.0, finished=3.0, exit_code=1)
    write_result(tmp_path / "expire.prom", "expire", started=1.0, finished=4.0, exit_code=0)
    (tmp_path / "node.prom").write_text("# TYPE node_thing gauge\nnode_thing 1\n")
    (tmp_path / "broken.prom").write_bytes(b"\xff\xfe not text")
    (tmp_path / "notes.txt").write_text("not read: only *.prom files are\n")
    huge = "# TYPE archiver_command_last_exit_code gauge\n" + 'archiver_command_last_exit_code{command="x"} 0\n' * 5000
    (tmp_path / "huge.prom").write_text(huge)  # far larger than any result: not read at every scrape
    found = served(tmp_path)
    assert found[("archiver_command_last_exit_code", cmd("verify"))] == 0
    assert found[("archiver_command_last_exit_code", cmd("reconcile"))] == 1
    assert found[("archiver_command_last_run_timestamp_seconds", cmd("expire"))] == 4.0
    assert ("archiver_command_last_success_timestamp_seconds", cmd("reconcile")) not in found
    assert not any(name.startswith("node_") for name, _ in found)
    assert ("archiver_command_last_exit_code", cmd("x")) not in found
    assert found[("archiver_textfiles_unreadable", ())] == 2


def test_a_series_in_two_files_is_served_once_from_the_newer(tmp_path: Path) -> None:
    """A copy of a result under another name would make the scrape invalid (a duplicate series,
    which Prometheus refuses whole): the newer file's value is served alone."""
    write_result(tmp_path / "verify-old.prom", "verify", started=1.0, finished=2.0, exit_code=1)
    os.utime(tmp_path / "verify-old.prom", (100, 100))
    write_result(tmp_path / "verify.prom", "verify", started=1.0, finished=3.0, exit_code=0)
    registry = CollectorRegistry()
    registry.register(CommandResults(tmp_path))
    text = generate_latest(registry).decode()
    assert text.count('archiver_command_last_exit_code{command="verify"}') == 1
    assert samples(text)[("archiver_command_last_exit_code", cmd("verify"))] == 0


def test_a_missing_folder_serves_nothing_but_the_count(tmp_path: Path) -> None:
    """Before any scheduled run there is no folder: nothing to serve, nothing unreadable."""
    assert served(tmp_path / "absent") == {("archiver_textfiles_unreadable", ()): 0}


def test_the_results_folder_defaults_to_metrics_beside_the_ledger(tmp_path: Path) -> None:
    """metrics.textfile_dir unset: metrics/ beside state.path, where the units write; a relative
    one is read from the configuration file's folder."""
    raw = {
        "source": {"api_key": "a1b2c3d4", "api_secret": "5e6f7a8b"},
        "storage": {"url": "s3://call-recordings/ccall"},
        "state": {"path": "/var/lib/archiver/ledger.sqlite3"},
    }
    assert parse_config(raw, environ={}).textfile_dir == Path("/var/lib/archiver/metrics")
    raw["metrics"] = {"textfile_dir": "results"}
    config = parse_config(raw, environ={}, base_dir=tmp_path)
    assert config.textfile_dir == tmp_path / "results"
