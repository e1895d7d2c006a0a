"""Crash safety: the daemon is SIGKILLed mid-delivery, restarted, and nothing is lost.

Every alert change reaches the receiver at least once; a change that was in
flight when the process died is sent again with the same idempotency key and
the same bytes, so the receiver can drop the duplicate.
"""

from __future__ import annotations

import random
import signal
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from tests.alerting import Outbox
from tests.helpers import ROOT, Proc, wait_until, write_config
from tests.servers import Reply, Request, Server

ALERTS = 60
KILLS = 5


@pytest.mark.slow
def test_sigkill_during_delivery_loses_nothing(tmp_path: Path, receiver: Server) -> None:
    rng = random.Random(20261121)
    accepted: dict[str, list[bytes]] = defaultdict(list)
    lock = threading.Lock()

    def respond(req: Request) -> Reply:
        if len(req.body) != int(req.headers["content-length"]):
            return Reply(400, b"truncated request")  # the sender died while sending it
        if rng.random() < 0.1:
            return Reply(503, b"try again", delay=0.05)
        with lock:
            accepted[req.headers["idempotency-key"]].append(req.body)
        return Reply(200, b"ok", delay=0.15)  # slow: kills land while requests are in flight

    receiver.routes["/hook"] = respond
    box = Outbox(tmp_path, "storywatch.db")
    for i in range(ALERTS):
        box.fire(box.story(f"Story {i}", ["A", "B"]), ["hook"])
    expected = {d.idempotency_key for d, _ in box.deliveries()}
    assert len(expected) == ALERTS

    config = write_config(tmp_path, {
        "state_dir": str(tmp_path), "rules_dir": str(ROOT / "rules"),
        # 4 in flight: the test server's listen backlog is 5.
        "notifiers": {"hook": {"type": "webhook", "url": receiver.url("/hook"),
                               "concurrency": 4}},
        "delivery": {"interval": 0.1, "batch": 8, "lease": 0.5, "backoff_initial": 0.1,
                     "backoff_max": 0.3},
        "metrics": {"listen": "127.0.0.1:0"},
    })

    def delivered() -> int:
        return sum(d.status == "delivered" for d, _ in box.deliveries())

    mid_delivery = 0
    for _ in range(KILLS):
        before = len(receiver.requests)
        proc = Proc(tmp_path, ["-c", str(config), "run"])
        wait_until(lambda n=before: len(receiver.requests) > n, timeout=20)
        threading.Event().wait(rng.uniform(0.05, 0.6))
        proc.signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        mid_delivery += 0 < delivered() < ALERTS

    proc = Proc(tmp_path, ["-c", str(config), "run"])
    wait_until(lambda: box.pending() == 0, timeout=60)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output()

    rows = box.deliveries()
    assert {d.status for d, _ in rows} == {"delivered"}
    assert set(accepted) == expected, "every alert change was accepted at least once"
    for key, bodies in accepted.items():
        assert len(set(bodies)) == 1, f"duplicates of {key} differ"
    assert mid_delivery >= 1, "at least one kill landed while deliveries were in progress"
    box.close()
