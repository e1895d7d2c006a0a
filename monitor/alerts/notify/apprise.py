"""Apprise (optional extra `storywatch[apprise]`): its many services, behind our outbox.

Apprise reports only success or failure per message, so every failure is
treated as transient and left to the retry policy (`max_attempts`,
`max_age`) to give up on; the reason is in Apprise's own log lines. Apprise
URLs carry no per-message headers, so the idempotency key is not sent.
"""

from __future__ import annotations

from typing import Any

from monitor.alerts import render
from monitor.alerts.notify.base import DELIVERED, Message, Outcome
from monitor.config import AppriseNotifier as AppriseConfig

_TYPES = {"info": "info", "low": "info", "medium": "warning", "high": "failure",
          "critical": "failure"}
"""Rule severity → Apprise notification type (its colour or icon)."""


class NotifierUnavailable(Exception):
    """A notifier whose optional dependency is not installed."""


class AppriseNotifier:
    kind = "apprise"

    def __init__(self, name: str, cfg: AppriseConfig) -> None:
        try:
            import apprise
        except ImportError as exc:
            raise NotifierUnavailable(
                f"notifier {name!r}: type apprise needs `pip install 'storywatch[apprise]'`"
            ) from exc
        self.name = name
        self.apprise: Any = apprise.Apprise()
        for url in cfg.urls:
            if not self.apprise.add(url):
                raise NotifierUnavailable(f"notifier {name!r}: Apprise does not accept the "
                                          f"URL {url.split(':', 1)[0]}://…")
        self.template = render.compile_template(cfg.template or render.CONSOLE, name)

    def preview(self, msg: Message) -> str:
        return render.render(self.template, msg.payload)

    async def send(self, msg: Message) -> Outcome:
        p = msg.payload
        title = f"[{render.MARKS.get(p['event'], p['event'])}] {p['rule']['title']}"
        ok = await self.apprise.async_notify(body=self.preview(msg), title=title,
                                             notify_type=_TYPES[p["rule"]["severity"]])
        if ok:
            return DELIVERED
        return Outcome(ok=False, retryable=True,
                       error="apprise: at least one service failed (see the apprise log)")
