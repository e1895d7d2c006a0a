"""Metrics as Prometheus sees them: a real `prometheus` scrapes a running daemon.

Every alert rule and every dashboard query is evaluated against that server;
`promtool` lints the live exposition and runs the alert rules' unit tests.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import need_binary
from tests.helpers import wait_until
from tests.promrun import ALERT_RULES, Prometheus
from tests.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "grafana" / "storywatch-dashboard.json"
RATE_INTERVAL = "15s"
"""What Grafana's `$__rate_interval` becomes here: fifteen 1-second scrapes."""
READY_WHEN = (
    'storywatch_deliveries_total{outcome="delivered"} > 0',
    'storywatch_deliveries_total{outcome="dead"} > 0',
    'storywatch_feed_fetches_total{outcome="not_modified"} > 0',
    'storywatch_story_events_total{kind="created"} > 0',
    "count_over_time(up[1m]) >= 15",
)
"""The workload has exercised every stage and Prometheus holds enough samples for rates."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workload, Prometheus]]:
    binary = need_binary("prometheus")
    tmp = tmp_path_factory.mktemp("stack")
    work = Workload(tmp)
    prom: Prometheus | None = None
    try:
        prom = Prometheus(binary, tmp / "prometheus", [work.target])
        ready = prom
        wait_until(lambda: all(ready.query(q) for q in READY_WHEN), timeout=90)
        yield work, prom
    finally:
        if prom:
            prom.close()
        work.close()


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERT_RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    import json

    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p.get("targets", [])]


def grafana_substitute(expr: str, work: Workload) -> str:
    return (expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace("$job", "storywatch").replace("$instance", work.target))


def as_bool(expr: str) -> str:
    """`x > 300` → `x > bool 300`: every series the alert watches, firing or not."""
    return re.sub(r"(>=|<=|==|!=|>|<)\s*(?=[0-9.])", r"\1 bool ", expr)


def real_values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result if not math.isnan(float(r["value"][1]))]


@pytest.mark.slow
def test_live_metrics_pass_promtool_lint(stack: tuple[Workload, Prometheus]) -> None:
    promtool = need_binary("promtool")
    work, _ = stack
    body = httpx.get(f"http://{work.target}/metrics", timeout=10).content
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stdout and not result.stderr, (
        result.stdout.decode() + result.stderr.decode())


@pytest.mark.slow
def test_every_stage_has_its_metric(stack: tuple[Workload, Prometheus]) -> None:
    _, prom = stack
    for name in ("storywatch_build_info", "storywatch_feed_fetches_total",
                 "storywatch_feed_fetch_duration_seconds_bucket",
                 "storywatch_schedule_lag_seconds", "storywatch_feeds",
                 "storywatch_entries_total", "storywatch_story_events_total",
                 "storywatch_story_cluster_duration_seconds_bucket",
                 "storywatch_rule_evaluations_total", "storywatch_rule_matches_total",
                 "storywatch_rule_matches_by_rule_total", "storywatch_alert_suppressions_total",
                 "storywatch_alerts", "storywatch_deliveries_total",
                 "storywatch_outbox_pending", "storywatch_outbox_oldest_pending_age_seconds",
                 "storywatch_outbox_dead_letters",
                 "storywatch_last_successful_poll_timestamp_seconds",
                 "storywatch_db_errors_total", "storywatch_database_size_bytes"):
        assert prom.query(name), f"{name} was not scraped"
    zero_initialised = prom.query('storywatch_feed_fetches_total{outcome="too_large"}')
    assert zero_initialised and float(zero_initialised[0]["value"][1]) == 0.0
    assert real_values(prom.query("storywatch_database_size_bytes"))[0] > 0


def test_alert_rule_unit_tests_pass() -> None:
    promtool = need_binary("promtool")
    for args in (["check", "rules", str(ALERT_RULES)],
                 ["test", "rules", str(ROOT / "prometheus" / "storywatch-alerts.test.yml")]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook() -> None:
    tests = (ROOT / "prometheus" / "storywatch-alerts.test.yml").read_text()
    runbook = (ROOT / "docs" / "operations.md").read_text().lower()
    for rule in alert_rules():
        assert f"alertname: {rule['alert']}" in tests
        assert rule["annotations"]["runbook"].endswith("#" + rule["alert"].lower())
        assert f"## {rule['alert'].lower()}" in runbook


@pytest.mark.slow
@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_expression_watches_live_series(stack: tuple[Workload, Prometheus],
                                              rule: dict[str, Any]) -> None:
    _, prom = stack
    prom.query(rule["expr"])  # raises on any evaluation error
    assert prom.query(as_bool(rule["expr"])), f"{rule['alert']} watches no series"
    loaded = {r["name"]: r for r in prom.rules()}
    assert loaded[rule["alert"]]["health"] in ("ok", "unknown"), loaded[rule["alert"]]


@pytest.mark.slow
@pytest.mark.parametrize(("title", "expr"), dashboard_queries(),
                         ids=[f"{t}:{i}" for i, (t, _) in enumerate(dashboard_queries())])
def test_dashboard_query_returns_data(stack: tuple[Workload, Prometheus], title: str,
                                      expr: str) -> None:
    work, prom = stack
    result = prom.query(grafana_substitute(expr, work))
    assert real_values(result), f"panel {title!r}: {expr} returned no numbers: {result}"
