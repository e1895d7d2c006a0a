"""The daemon end to end: seed feeds become an alert that fires, updates, then resolves."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor import daemon
from monitor.daemon import Daemon
from monitor.db.models import Delivery
from tests.alerting import Outbox
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


def stop_mid_delivery(tmp_path: Path, receiver: Server, answer_after: float) -> Delivery:
    """One alert to a receiver answering after `answer_after` s; the daemon stops mid-request."""
    receiver.routes["/hook"] = Reply(200, delay=answer_after)
    box = Outbox(tmp_path, "storywatch.db")
    box.fire(box.story("Quake", ["A", "B"]), ["hook"])
    cfg = settings(tmp_path, receiver=receiver, delivery={"lease": 600})
    run_daemon(Daemon(cfg), lambda: bool(receiver.hits("/hook")))
    [(row, _)] = box.deliveries()
    box.close()
    return row


def test_clean_stop_releases_delivery_leases(tmp_path: Path, receiver: Server,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery still in flight when the stop's grace period ends is released, not leased."""
    monkeypatch.setattr(daemon, "STOP_GRACE", 0.5)
    row = stop_mid_delivery(tmp_path, receiver, answer_after=3)
    assert (row.status, row.lease_owner, row.lease_expires_at) == ("pending", None, None), \
        "the next start sends it again at once instead of after the 10-minute lease"


def test_clean_stop_lets_a_delivery_in_flight_finish(tmp_path: Path, receiver: Server,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Within the grace period the receiver's answer is recorded: no resend after a restart."""
    row = stop_mid_delivery(tmp_path, receiver, answer_after=2)
    assert (row.status, row.lease_owner) == ("delivered", None)
    assert len(receiver.hits("/hook")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], \
        "ticks during the slow delivery are not 'skipped' warnings"
