"""The dashboard JSON has the structure Grafana 10+ expects and no hard-coded data source.

Its queries are evaluated against a real Prometheus in test_prometheus.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((ROOT / "grafana" / "storywatch-dashboard.json").read_text())
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "stat", "timeseries"}
ROWS = ["Overview", "Throughput", "Latency", "Alert pipeline", "Process"]


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def test_top_level_fields() -> None:
    assert DASHBOARD["schemaVersion"] >= 36  # Grafana 9.x/10.x and later
    assert isinstance(DASHBOARD["title"], str) and DASHBOARD["title"]
    assert DASHBOARD.get("id") is None and "__inputs" not in DASHBOARD
    for key in ("time", "templating", "annotations", "panels", "uid", "tags"):
        assert key in DASHBOARD


def test_datasource_variable_and_no_hard_coded_uids() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
    assert set(datasource_uids(DASHBOARD)) == {"${datasource}", "-- Grafana --"}


def datasource_uids(node: Any) -> list[str]:
    """Every `datasource.uid` anywhere in the JSON."""
    if isinstance(node, list):
        return [u for item in node for u in datasource_uids(item)]
    if not isinstance(node, dict):
        return []
    found = [node["datasource"]["uid"]] if isinstance(node.get("datasource"), dict) else []
    return found + [u for value in node.values() for u in datasource_uids(value)]


def test_rows_in_order_with_panels_under_them() -> None:
    rows = [p for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ROWS
    assert DASHBOARD["panels"][0]["type"] == "row"
    for row in rows:
        assert row["collapsed"] is False and row["panels"] == []
        assert row["gridPos"] == {"h": 1, "w": 24, "x": 0, "y": row["gridPos"]["y"]}


def test_panels_are_well_formed_and_do_not_overlap() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        assert panel["type"] in PANEL_TYPES
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in panels():
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        assert all(t["expr"].strip() for t in panel["targets"])
        assert "unit" in panel["fieldConfig"]["defaults"]


def test_provisioning_files() -> None:
    prov = ROOT / "grafana" / "provisioning"
    dashboards = yaml.safe_load((prov / "dashboards" / "storywatch.yaml").read_text())
    assert dashboards["apiVersion"] == 1
    provider = dashboards["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())
    assert sources["apiVersion"] == 1
    assert sources["datasources"][0]["type"] == "prometheus"
    assert sources["datasources"][0]["isDefault"] is False
