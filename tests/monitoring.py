"""The alerting rules and the dashboard in monitoring/, read as the tests need them: their
expressions and the metric names those use (parsed as PromQL, not matched by pattern)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import yaml

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULES = MONITORING / "archiver.rules.yml"
RULE_TESTS = MONITORING / "archiver.rules.test.yml"
DASHBOARD = MONITORING / "archiver.dashboard.json"
RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook.md"

# Series Prometheus makes itself: the scrape's health and the alerts' state.
PROMETHEUS_OWN = frozenset({"up", "ALERTS"})

# What Grafana puts in place of its variables before it sends a query.
GRAFANA = {"$__rate_interval": "1m", "$job": "archiver", "$instance": ".*", "$source": ".*"}


def alerts() -> list[dict[str, Any]]:
    """The alerting rules, in file order."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression as Grafana sends it) for every query of every panel."""
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names *expr*'s selectors name; ValueError for a selector without one (a
    name matched by a pattern could drift unseen)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if not node.name:
                raise ValueError(f"a selector without a metric name in {expr!r}")
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def used_names() -> dict[str, set[str]]:
    """Every metric name the rules and the dashboard use -> where (alert names, panel titles)."""
    where: dict[str, set[str]] = {}
    sources = [(rule["alert"], rule["expr"]) for rule in alerts()] + dashboard_exprs()
    for place, expr in sources:
        for name in metric_names(expr):
            where.setdefault(name, set()).add(place)
    return where


def runbook_anchor(alert: str) -> str:
    """The anchor GitHub gives the runbook's heading ``## ALERT``."""
    return re.sub(r"[^a-z0-9-]", "", alert.lower())
