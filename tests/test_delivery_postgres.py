"""Two delivery workers on one PostgreSQL outbox: leases with SKIP LOCKED, no double sends."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from monitor.alerts.deliver import Deliverer
from monitor.alerts.notify import build_notifiers
from monitor.config import DeliveryConfig
from tests.alerting import NOTIFIERS, RULE, Outbox
from tests.servers import Reply, Request, Server


@pytest.mark.parametrize(("alerts", "slow", "lease"), [
    (120, 0, 60.0),
    # The first batch outlasts its lease while the other worker runs out of work: the
    # lease must be renewed, not taken over.
    (24, 4, 0.4),
], ids=["fast", "slow-batch"])
def test_two_workers_share_the_outbox_without_sending_twice(
        tmp_path: Path, pg_url: str, receiver: Server, alerts: int, slow: int,
        lease: float) -> None:
    def respond(req: Request) -> Reply:
        return Reply(200, delay=1.5 if len(receiver.requests) <= slow else 0.01)

    receiver.routes["/hook"] = respond
    box = Outbox(tmp_path, url=pg_url)
    story = box.story("Quake", ["A", "B"])
    for i in range(alerts):
        box.fire(story, ["hook"], rule=RULE.model_copy(update={"id": f"quake-{i}"}))
    configs = NOTIFIERS.validate_python({"hook": {"type": "webhook",
                                                  "url": receiver.url("/hook")}})
    cfg = DeliveryConfig(batch=4, lease=lease)
    claimed: Counter[str] = Counter()

    async def worker(owner: str, client: httpx.AsyncClient) -> None:
        deliverer = Deliverer(box.sessions, build_notifiers(configs, client), cfg, owner,
                              configs)
        while n := await deliverer.run_once():
            claimed[owner] += n

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(worker("one", client), worker("two", client))

    asyncio.run(main())
    keys = Counter(r.headers["idempotency-key"] for r in receiver.hits("/hook"))
    assert len(keys) == alerts and set(keys.values()) == {1}, "each change sent exactly once"
    assert {d.status for d, _ in box.deliveries()} == {"delivered"}
    assert claimed["one"] and claimed["two"], f"both workers took part: {claimed}"
    box.close()
