"""`storywatch rules …` and `silences …` as analysts use them, and hot reload."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from monitor.db.models import Alert, Suppression
from monitor.demo.render import Item, rss
from tests.helpers import ROOT, Proc, count, query, sigterm, wait_until, write_config
from tests.servers import Reply, Server


def storywatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_lint_and_test_the_shipped_rules(tmp_path: Path) -> None:
    write_config(tmp_path, {"rules_dir": str(ROOT / "rules")})
    lint = storywatch("rules", "lint", cwd=tmp_path)
    assert lint.returncode == 0, lint.stderr
    test = storywatch("rules", "test", cwd=tmp_path)
    assert test.returncode == 0, test.stdout
    assert "FAIL" not in test.stdout and test.stdout.strip().endswith(" passed, 0 failed")


def test_lint_reports_references_and_templates(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(
        "id: a\ntitle: A\nnotify: [pager]\nsummary: '{{ stroy.title }}'\n"
        "signals: {s: {any: [{contains: x}]}}\n"
        "correlation: {type: sequence, steps: [s, t], within: 1h}\n")
    write_config(tmp_path, {"rules_dir": "rules"})
    result = storywatch("rules", "lint", cwd=tmp_path)
    assert result.returncode == 1
    assert (f"{rules / 'a.yaml'}:6:42: correlation.steps.1: unknown signal 't'; defined: s"
            in result.stderr)
    (rules / "a.yaml").unlink()
    (rules / "b.yaml").write_text("id: b\ntitle: B\nnotify: [pager]\n"
                                  "summary: '{{ stroy.title }}'\n")
    result = storywatch("rules", "lint", cwd=tmp_path)
    assert result.returncode == 1
    assert "rule b: notify: unknown notifier 'pager'" in result.stderr
    assert "rule b: summary:" in result.stderr and "stroy" in result.stderr


def test_a_failing_inline_test_fails_the_command(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("""
id: a
title: A
where: {any: [{contains: quake}]}
tests:
  - name: wrong on purpose
    events: [{at: "2026-01-01T00:00:00Z", story: 1, title: "Quake"}]
    expect: []
""")
    write_config(tmp_path, {"rules_dir": "rules"})
    result = storywatch("rules", "test", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL a: wrong on purpose" in result.stdout
    assert "expected 0 alert change(s), got 1" in result.stdout


def test_schema_is_json_schema(tmp_path: Path) -> None:
    result = storywatch("rules", "schema", cwd=tmp_path)
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "correlation" in json.dumps(schema)


def test_backtest_feed_files_finds_the_seed_story(tmp_path: Path,
                                                  seeds: list[tuple[str, str]]) -> None:
    base = datetime(2025, 3, 19, 5, 0, tzinfo=UTC)
    files = []
    for i, (title, body) in enumerate(seeds):
        path = tmp_path / f"outlet{i}.xml"
        path.write_bytes(rss(f"Outlet {i}", "https://o.example/", [
            Item(f"s{i}", title, body, f"https://o{i}.example/a", base + timedelta(hours=i))]))
        files.append(str(path))
    write_config(tmp_path, {"rules_dir": str(ROOT / "rules")})
    result = storywatch("rules", "backtest", "--from", "2025-03-18T00:00:00Z",
                        "--to", "2025-03-20T00:00:00Z", "--feeds", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    energy = [ln for ln in result.stdout.splitlines() if "energy-strike-after-ceasefire" in ln]
    assert [ln.split()[1] for ln in energy] == ["FIRING", "UPDATED", "UPDATED", "UPDATED"]
    assert all(f"Outlet {i}" in energy[-1] for i in range(5))
    assert result.stdout.strip().endswith("suppressed")


def test_silences_mute_live_alerts_and_hot_reload(tmp_path: Path, server: Server) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("id: tulips\ntitle: T\nseverity: low\n"
                                  "where: {any: [{contains: tulip}]}\n")
    server.routes["/f.xml"] = Reply(body=rss("F", "https://f.example/", []))
    write_config(tmp_path, {
        "rules_dir": "rules",
        "feeds": [{"url": server.url("/f.xml"), "name": "F", "interval": 0.3}],
        "polling": {"min_interval": 0.2, "dispatch_interval": 0.2,
                    "allowed_networks": ["127.0.0.0/8"], "host_spacing": 0},
        "delivery": {"interval": 0.2},
        "notifiers": {"out": {"type": "console"}},
        "metrics": {"enabled": False},
    })
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    assert storywatch("db", "upgrade", cwd=tmp_path).returncode == 0
    added = storywatch("silences", "add", "severity=low", "rule_id=~tul.*", "--duration", "1h",
                       "--author", "ana", "--comment", "known noise", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    listed = storywatch("silences", "list", cwd=tmp_path).stdout
    assert "severity=low,rule_id=~tul.*" in listed and "ana" in listed

    proc = Proc(tmp_path, ["run"])
    proc.wait_for("storywatch running")
    server.routes["/f.xml"] = Reply(body=rss("F", "https://f.example/", [
        Item("1", "Tulip fields bloom", "Spring.")]))
    wait_until(lambda: count(db, Suppression) >= 1)
    assert count(db, Alert) == 0
    assert [r for (r,) in query(db, select(Suppression.reason))] == ["silenced"]

    (rules / "b.yaml").write_text("id: crocus\ntitle: C\nwhere: {any: [{contains: crocus}]}\n")
    proc.wait_for("rules=2")                               # no SIGHUP: picked up by itself
    server.routes["/f.xml"] = Reply(body=rss("F", "https://f.example/", [
        Item("1", "Tulip fields bloom", "Spring."), Item("2", "Crocus carpet", "Purple.")]))
    wait_until(lambda: count(db, Alert) == 1)
    assert sigterm(proc) == 0
    expired = storywatch("silences", "expire", "1", cwd=tmp_path)
    assert expired.returncode == 0 and "silence 1 expired" in expired.stdout
    assert "rule_id" not in storywatch("silences", "list", cwd=tmp_path).stdout
    sup = storywatch("rules", "suppressions", cwd=tmp_path).stdout
    assert "tulips" in sup and "silenced" in sup
