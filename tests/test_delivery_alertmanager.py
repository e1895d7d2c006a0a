"""Alertmanager: the real `prometheus-alertmanager` binary on 127.0.0.1, read back via its API."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.metrics import REGISTRY
from monitor.rules.schema import Rule
from tests.alerting import RULE, Outbox
from tests.conftest import need_binary
from tests.helpers import wait_until
from tests.servers import Reply, Server

QUIET = Rule.model_validate({**RULE.model_dump(), "resolve_after": 0})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: Server) -> Iterator[str]:
    """A real Alertmanager whose only receiver is a webhook to our local `receiver`."""
    binary = need_binary("prometheus-alertmanager")
    receiver.routes["/am-out"] = Reply(200)
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps({
        "route": {"receiver": "local", "group_by": ["storywatch_fingerprint"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "local", "webhook_configs": [
            {"url": receiver.url("/am-out"), "send_resolved": True}]}],
    }))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen([binary, f"--config.file={config}",
                             f"--storage.path={tmp_path / 'am-data'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
            return False

    try:
        wait_until(ready, timeout=20)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def active(base: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{base}/api/v2/alerts", timeout=5).json())


def notified(receiver: Server) -> list[tuple[str, str]]:
    """(status, alertname) of every notification Alertmanager sent onwards."""
    return [(a["status"], a["labels"]["alertname"])
            for r in receiver.hits("/am-out") for a in r.json()["alerts"]]


def test_firing_resend_and_resolve_through_real_alertmanager(
        tmp_path: Path, alertmanager: str, receiver: Server) -> None:
    box = Outbox(tmp_path)
    notifiers = {"am": {"type": "alertmanager", "url": alertmanager, "resend_interval": 0,
                        "template": "{{ rule.title }}: {{ story.title }}"}}
    story = box.story("Quake hits valley", ["Wire A", "Ledger B"])
    box.fire(story, ["am"], rule=QUIET)
    box.deliver(notifiers)

    [alert] = active(alertmanager)
    [ours] = box.alerts()
    assert alert["labels"] == {"alertname": "quake", "rule_id": "quake", "severity": "high",
                               "team": "desk", "storywatch_fingerprint": ours.fingerprint}
    assert alert["annotations"]["summary"] == "Earthquake reported: Quake hits valley"
    assert alert["annotations"]["sources"] == "Wire A, Ledger B"
    assert alert["annotations"]["idempotency_key"] == box.deliveries()[0][0].idempotency_key
    assert alert["annotations"]["description"] == "A strong earthquake."
    assert alert["status"]["state"] == "active"
    assert alert["generatorURL"] == f"https://wirea.example/{story}"
    wait_until(lambda: ("firing", "quake") in notified(receiver), timeout=15)

    def resends() -> float:
        return REGISTRY.get_sample_value("storywatch_alert_resends_total",
                                         {"notifier": "am", "result": "ok"}) or 0.0

    time.sleep(0.05)  # updatedAt has millisecond resolution
    before = resends()
    box.resend(notifiers)
    assert resends() == before + 1
    [again] = active(alertmanager)
    assert again["updatedAt"] > alert["updatedAt"], "the re-send refreshed the alert"

    box.resolve(["am"], QUIET)
    box.deliver(notifiers)
    assert active(alertmanager) == []
    wait_until(lambda: ("resolved", "quake") in notified(receiver), timeout=15)
    box.resend(notifiers)
    assert active(alertmanager) == [], "a resolved alert is not re-sent"
    box.close()
