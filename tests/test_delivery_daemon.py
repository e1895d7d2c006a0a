"""The daemon end to end: seed feeds become an alert that fires, updates, then resolves."""

from __future__ import annotations

from pathlib import Path

from monitor.daemon import Daemon
from tests.helpers import ROOT, run_daemon, seed_feeds, settings
from tests.servers import Reply, Server

ENERGY = "energy-strike-after-ceasefire.yaml"


def test_alert_resolves_after_its_story_goes_quiet(tmp_path: Path, server: Server,
                                                   receiver: Server,
                                                   seeds: list[tuple[str, str]]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / ENERGY).write_text((ROOT / "rules" / ENERGY).read_text() + "resolve_after: 1s\n")
    receiver.routes["/hook"] = Reply(200)
    cfg = settings(tmp_path, feeds=seed_feeds(server, seeds), receiver=receiver,
                   rules_dir=rules)

    def events() -> list[str]:
        return [r.json()["event"] for r in receiver.hits("/hook")]

    run_daemon(Daemon(cfg), lambda: "resolved" in events(), timeout=40)
    got = events()
    assert got[0] == "firing" and got[-1] == "resolved"
    assert set(got[1:-1]) <= {"updated"}
    last = receiver.hits("/hook")[-1].json()
    assert last["status"] == "resolved" and last["seq"] == len(got)
    assert len(last["sources"]) == last["story"]["source_count"] >= 2
