"""When to poll a feed next: its interval on success, exponential backoff on failure.

Jitter spreads feeds out so a restart does not poll everything at once, and a
server's `Retry-After` is always honoured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.feeds import fetch

JITTER = 0.1


@dataclass(frozen=True)
class Policy:
    default_interval: float
    min_interval: float
    max_interval: float
    retry_failed_after: float
    max_backoff: float


def interval_for(policy: Policy, configured: float | None, ttl: float | None) -> float:
    """The feed's configured interval (or the default), raised by its `<ttl>`, within bounds."""
    base = configured if configured is not None else policy.default_interval
    if ttl:
        base = max(base, ttl)
    return min(max(base, policy.min_interval), policy.max_interval)


def next_check(policy: Policy, now: datetime, outcome: str, failures: int,
               interval: float, retry_after: float | None,
               rng: random.Random | None = None) -> datetime:
    """Next poll time after an outcome; `failures` counts this one if it failed."""
    rand = rng or random
    if outcome in (fetch.OK, fetch.NOT_MODIFIED):
        delay = interval
    else:
        delay = min(policy.retry_failed_after * 2 ** max(0, failures - 1), policy.max_backoff)
    delay *= 1 + rand.uniform(-JITTER, JITTER)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)
