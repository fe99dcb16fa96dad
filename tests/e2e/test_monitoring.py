"""The alerts against a running archiver: every metric name the rules and the dashboard use is one
a real daemon serves, the nightly jobs' results reach its /metrics, and Debian's prometheus,
scraping it with the rules loaded, fires the alert of a verify that found a problem."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from archiver.simulator import Dataset, Simulator
from tests.helpers import (
    TZ,
    MotoServer,
    free_port,
    make_bucket,
    metric,
    need_os_tools,
    run_cli,
    start_archiver,
    terminate,
    wait_for_port,
    wait_until,
)
from tests.monitoring import PROMETHEUS_OWN, RULES, alerts, dashboard_exprs, used_names


@dataclass
class Served:
    """A running daemon whose folder of results holds real verify, reconcile and expire runs'."""

    metrics_url: str
    port: int
    results: Path

    def scrape(self) -> str:
        return httpx.get(self.metrics_url, timeout=10).text


@pytest.fixture(scope="module")
def served(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Archive yesterday; run verify (passes), change a recording in the bucket, run verify again
    (fails), reconcile and expire, each with --metrics-file as the units run them; then start
    the daemon with metrics.listen and wait until it has polled."""
    tmp = tmp_path_factory.mktemp("served")
    bucket = make_bucket(moto_server.endpoint)
    port = free_port()
    dataset = Dataset(seed=5, calls_per_day=40, max_duration=3, business_hours_share=0)
    with Simulator(dataset) as sim:
        raw: dict[str, Any] = {
            "source": {
                "base_url": sim.url,
                "api_key": sim.api_key,
                "api_secret": sim.api_secret,
                "recording_retention": "90d",
            },
            "storage": {"url": bucket.url, "endpoint_url": bucket.endpoint},
            "state": {"path": str(tmp / "ledger.sqlite3")},
            "poll": {"interval": "1s", "settle": "1s", "lookback": "2h"},
            "metrics": {"listen": f"127.0.0.1:{port}"},
        }
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        results = tmp / "metrics"  # metrics.textfile_dir's default: beside the ledger
        today = datetime.now(TZ).date()
        day = ["--since", f"{today - timedelta(days=1)}", "--until", f"{today}"]

        def scheduled(command: str, *args: str) -> int:
            done = run_cli(command, "-c", str(config), *args, "--metrics-file", str(results / f"{command}.prom"))
            assert "Traceback" not in done.stderr, done.stderr
            return done.returncode

        backfill = run_cli("backfill", "-c", str(config), *day, timeout=300)
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        assert scheduled("verify", *day) == 0
        recording = next(k for k in bucket.objects() if k.endswith(".wav"))
        bucket.client.put_object(Bucket=bucket.name, Key=recording, Body=b"RIFF not the recording")
        assert scheduled("verify", *day) == 1
        assert scheduled("reconcile", *day) == 0
        assert scheduled("expire") == 0
        log = tmp / "daemon.log"
        daemon = start_archiver("run", config, log=log)
        try:
            wait_for_port(port)
            wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200, timeout=60)
            yield Served(f"http://127.0.0.1:{port}/metrics", port, results)
        finally:
            assert terminate(daemon) == 0, log.read_text()[-3000:]


def sample_names(exposition: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


@pytest.mark.timeout(600)
def test_every_metric_the_rules_and_the_dashboard_use_is_served_by_a_running_daemon(served: Served) -> None:
    """No rule or panel reads a name the daemon does not serve: a renamed metric fails here, not
    silently in production (an alert on a series that does not exist never fires)."""
    served_names = sample_names(served.scrape())
    unknown = {name: places for name, places in used_names().items() if name not in served_names | PROMETHEUS_OWN}
    assert not unknown, f"used but not served: {unknown}"


@pytest.mark.timeout(600)
def test_the_nightly_jobs_results_reach_the_daemons_metrics(served: Served) -> None:
    """verify's failure after a success keeps the success's time; reconcile and expire say 0."""
    text = served.scrape()
    assert metric(text, "archiver_command_last_exit_code", command="verify") == 1
    assert metric(text, "archiver_command_last_exit_code", command="reconcile") == 0
    assert metric(text, "archiver_command_last_exit_code", command="expire") == 0
    verified = metric(text, "archiver_command_last_success_timestamp_seconds", command="verify")
    assert verified < metric(text, "archiver_command_last_run_timestamp_seconds", command="verify")
    assert metric(text, "archiver_textfiles_unreadable") == 0
    assert metric(text, "archiver_source_recording_retention_seconds", source="default") == 90 * 86400
    assert sorted(p.name for p in served.results.iterdir()) == ["expire.prom", "reconcile.prom", "verify.prom"]


@pytest.mark.timeout(600)
def test_prometheus_scraping_the_daemon_fires_the_alert_of_a_failed_verify(served: Served, tmp_path: Path) -> None:
    """Debian's prometheus, with the rules loaded, scrapes the daemon: every rule evaluates
    without error, every dashboard query is answered, the alert expression of the nightly audit
    answers with the failed verify, and that alert alone fires."""
    need_os_tools("a real Prometheus", "prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "archiver", "static_configs": [{"targets": [f"127.0.0.1:{served.port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [
        shutil.which("prometheus") or "prometheus",
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    api = f"http://127.0.0.1:{port}/api/v1"
    with (tmp_path / "prometheus.log").open("wb") as log:
        prometheus = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/-/ready") == 200, timeout=60)
        wait_until(lambda: _query(api, 'up{job="archiver"}') == [1.0], timeout=60)
        audit = next(rule for rule in alerts() if rule["alert"] == "ArchiverNightlyAuditFailed")
        answer = httpx.get(f"{api}/query", params={"query": audit["expr"]}).json()
        assert answer["status"] == "success"
        assert [(r["metric"]["command"], r["value"][1]) for r in answer["data"]["result"]] == [("verify", "1")]

        def firing() -> set[str]:
            found = httpx.get(f"{api}/alerts").json()["data"]["alerts"]
            return {a["labels"]["alertname"] for a in found if a["state"] == "firing"}

        wait_until(lambda: "ArchiverNightlyAuditFailed" in firing(), timeout=60)
        assert firing() == {"ArchiverNightlyAuditFailed"}
        groups = httpx.get(f"{api}/rules").json()["data"]["groups"]
        evaluated = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(evaluated) == {rule["alert"] for rule in alerts()}
        assert all(rule["health"] == "ok" for rule in evaluated.values()), json.dumps(evaluated, indent=1)
        for title, expr in dashboard_exprs():
            answered = httpx.get(f"{api}/query", params={"query": expr}).json()
            assert answered["status"] == "success", f"{title}: {answered}"
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _query(api: str, expr: str) -> list[float]:
    data = httpx.get(f"{api}/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return [float(r["value"][1]) for r in data]


def test_a_scheduled_command_records_how_it_ended_even_when_it_could_not_start(tmp_path: Path) -> None:
    """A configuration error (exit 2) is recorded as such; a results file that cannot be written is
    said on stderr and leaves the command's own exit code alone."""
    bad = tmp_path / "config.yaml"
    bad.write_text("storage: {url: s3://call-recordings/ccall}\nretention: {keep: soon}\n")
    results = tmp_path / "metrics" / "expire.prom"
    done = run_cli("expire", "-c", str(bad), "--metrics-file", str(results))
    assert done.returncode == 2
    assert "At 'retention.keep'" in done.stderr
    text = results.read_text()
    assert metric(text, "archiver_command_last_exit_code", command="expire") == 2
    assert "archiver_command_last_success_timestamp_seconds" not in text
    (tmp_path / "file").write_text("a file, not a folder")
    done = run_cli("expire", "-c", str(bad), "--metrics-file", str(tmp_path / "file" / "expire.prom"))
    assert done.returncode == 2
    assert "cannot write --metrics-file" in done.stderr
    assert "Traceback" not in done.stderr
