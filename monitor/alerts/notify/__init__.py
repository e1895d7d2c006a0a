"""Notifiers: one small module per integration, one interface (`Notifier`)."""

from __future__ import annotations

import httpx

from monitor.alerts.notify.base import Notifier, Outcome
from monitor.alerts.notify.console import ConsoleNotifier
from monitor.alerts.notify.webhook import WebhookNotifier
from monitor.config import ConsoleNotifier as ConsoleConfig
from monitor.config import NotifierConfig
from monitor.config import WebhookNotifier as WebhookConfig

__all__ = ["Notifier", "Outcome", "build_notifiers"]


def build_notifiers(configs: dict[str, NotifierConfig],
                    client: httpx.AsyncClient) -> dict[str, Notifier]:
    """Instantiate the configured notifiers, sharing one HTTP client."""
    out: dict[str, Notifier] = {}
    for name, cfg in configs.items():
        if isinstance(cfg, WebhookConfig):
            out[name] = WebhookNotifier(name, cfg, client)
        elif isinstance(cfg, ConsoleConfig):
            out[name] = ConsoleNotifier(name, cfg)
    return out
