"""monitoring/: the alerting rules pass Debian's promtool, every alert fires and resolves in its
unit tests and has its runbook section, and the dashboard queries the same metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import need_os_tools
from tests.monitoring import (
    DASHBOARD,
    PROMETHEUS_OWN,
    RULE_TESTS,
    RULES,
    RUNBOOK,
    alerts,
    dashboard,
    dashboard_exprs,
    metric_names,
    runbook_anchor,
)


@pytest.fixture
def promtool() -> str:
    need_os_tools("checking the alerting rules", "promtool")
    return shutil.which("promtool") or "promtool"


def test_promtool_finds_the_rules_valid(promtool: str) -> None:
    """promtool check rules: the file parses, every expression is valid PromQL, no duplicates."""
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_sees_every_alert_fire_and_resolve(promtool: str) -> None:
    """promtool test rules passes, and its cases expect each alert firing at one time and gone at a
    later one (so none is left untested, and none only ever fires)."""
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    fired: dict[str, list[float]] = {}
    resolved: dict[str, list[float]] = {}
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            at = _seconds(check["eval_time"])
            (fired if check["exp_alerts"] else resolved).setdefault(check["alertname"], []).append(at)
    names = {rule["alert"] for rule in alerts()}
    assert set(fired) == names
    for name in names:
        assert any(gone > min(fired[name]) for gone in resolved.get(name, [])), f"{name} never resolves in a test"


def test_a_rule_that_would_not_fire_fails_its_unit_test(promtool: str, tmp_path: Path) -> None:
    """The unit tests hold the rules to what they say: a rule whose condition can no longer be met
    (ArchiverDown waiting for up == 2) makes promtool test rules fail."""
    broken = RULES.read_text().replace('up{job="archiver"} == 0', 'up{job="archiver"} == 2', 1)
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path)
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "alertname: ArchiverDown" in result.stdout + result.stderr


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def test_every_alert_has_a_severity_a_summary_and_its_own_runbook_section() -> None:
    """Each alert links docs/runbook.md#its-name, where a section of that name says what to do;
    the runbook has no section for an alert that no longer exists."""
    runbook = RUNBOOK.read_text()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", runbook, re.M | re.S))
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Archiver[A-Z][A-Za-z]+", name)
        assert rule["labels"]["severity"] in ("critical", "warning")
        annotations = rule["annotations"]
        assert annotations["summary"]
        assert annotations["description"]
        assert annotations["runbook_url"].endswith("/docs/runbook.md#" + runbook_anchor(name)), name
        assert name in sections, f"docs/runbook.md has no section ## {name}"
        assert len(sections[name]) > 200, f"the runbook says too little about {name}"
    stale = {s for s in sections if s.startswith("Archiver")} - {rule["alert"] for rule in alerts()}
    assert not stale, f"runbook sections for alerts that do not exist: {stale}"


def test_the_dashboard_is_grafana_json_whose_every_query_is_promql() -> None:
    """A dashboard Grafana imports: a uid, a Prometheus data source chosen by a variable, each
    panel placed, described and queried in PromQL that parses."""
    board = dashboard()
    assert board["uid"] == "ccall-archiver"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance", "source"} <= set(variables)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        assert grid["x"] + grid["w"] <= 24
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    for title, expr in exprs:
        assert metric_names(expr), f"{title}: {expr}"


def test_the_dashboard_shows_what_every_alert_watches() -> None:
    """Every metric an alert reads is on the dashboard, and some panel names each alert, so that
    the one who is paged finds the graph behind it."""
    on_board = {name for _, expr in dashboard_exprs() for name in metric_names(expr)}
    described = " ".join(panel.get("description", "") for panel in dashboard()["panels"])
    for rule in alerts():
        missing = metric_names(rule["expr"]) - on_board - PROMETHEUS_OWN
        assert not missing, f"{rule['alert']} reads {missing}, which no panel shows"
        assert rule["alert"] in described, f"no panel names {rule['alert']}"
    assert DASHBOARD.read_text().endswith("}\n")
