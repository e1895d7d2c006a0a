"""Console notifier: one readable block per alert change, for the demo and debugging."""

from __future__ import annotations

import sys

from monitor.alerts import render
from monitor.alerts.notify.base import DELIVERED, Message, Outcome
from monitor.config import ConsoleNotifier as ConsoleConfig


class ConsoleNotifier:
    kind = "console"

    def __init__(self, name: str, cfg: ConsoleConfig) -> None:
        self.name = name
        self.stream = sys.stderr if cfg.stream == "stderr" else sys.stdout
        self.template = render.compile_template(cfg.template or render.CONSOLE, name)

    def preview(self, msg: Message) -> str:
        return render.render(self.template, msg.payload)

    async def send(self, msg: Message) -> Outcome:
        print(self.preview(msg), file=self.stream, flush=True)
        return DELIVERED
