"""Console notifier: one readable block per alert change, for the demo and debugging."""

from __future__ import annotations

import sys
from typing import Any

from monitor.alerts.notify.base import DELIVERED, Outcome
from monitor.config import ConsoleNotifier as ConsoleConfig

_MARK = {"firing": "ALERT", "updated": "UPDATE", "resolved": "RESOLVED"}


def render(payload: dict[str, Any]) -> str:
    story = payload["story"]
    lines = [
        f"[{_MARK.get(payload['event'], payload['event'].upper())}] "
        f"{payload['rule']['severity'].upper()} {payload['rule']['title']}",
        f"  story #{story['id']}: {story['title']}",
        f"  {story['source_count']} source(s), first seen {story['first_seen']}",
    ]
    lines += [f"   - {s['name']}: {s['title']}" for s in payload["sources"]]
    return "\n".join(lines)


class ConsoleNotifier:
    kind = "console"

    def __init__(self, name: str, cfg: ConsoleConfig) -> None:
        self.name = name
        self.stream = sys.stderr if cfg.stream == "stderr" else sys.stdout

    async def send(self, payload: dict[str, Any], idempotency_key: str) -> Outcome:
        print(render(payload), file=self.stream, flush=True)
        return DELIVERED
