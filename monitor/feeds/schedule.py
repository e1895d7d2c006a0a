"""When to poll a feed next, and when to give up on it for a while.

The interval follows how often the feed publishes, is raised (never lowered)
by what the server says about freshness (`<ttl>`, `Cache-Control: max-age`,
`Expires`), and stays within the configured bounds. Failures back off
exponentially; a feed is suspended only after many failures over several
days, and suspended feeds are still retried after a long quiet period so
a site that comes back is noticed without anyone acting. Jitter spreads
feeds out so a restart does not poll everything at once, and a server's
`Retry-After` is always honoured.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.feeds import fetch

JITTER = 0.1
RECENT = 20
"""How many of the newest publish times the adaptive interval looks at."""


@dataclass(frozen=True)
class Policy:
    default_interval: float
    min_interval: float
    max_interval: float
    retry_failed_after: float
    max_backoff: float
    suspend_after_failures: int = 10
    suspend_after: float = 7 * 86400.0
    """Failures must also span at least this many seconds before a feed is suspended."""
    suspended_retry: float = 7 * 86400.0


def publish_interval(times: Iterable[datetime]) -> float | None:
    """Half the median gap between the newest distinct publish times, or None if unknown.

    Polling twice per typical gap keeps the expected delay at a quarter of it
    without hammering feeds that publish once a week.
    """
    newest = sorted(set(times), reverse=True)[:RECENT]
    if len(newest) < 2:
        return None
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(newest)]
    return statistics.median(gaps) / 2


def interval_for(policy: Policy, configured: float | None, adaptive: float | None,
                 hints: Iterable[float | None] = ()) -> float:
    """Configured interval, else the adaptive one, else the default; raised by server hints."""
    base = configured if configured is not None else (
        adaptive if adaptive is not None else policy.default_interval)
    for hint in hints:
        if hint:
            base = max(base, hint)
    return min(max(base, policy.min_interval), policy.max_interval)


def should_suspend(policy: Policy, failures: int, first_failure: datetime | None,
                   now: datetime) -> bool:
    """Many consecutive failures spanning days: one bad weekend is not enough."""
    return (failures >= policy.suspend_after_failures and first_failure is not None
            and (now - first_failure).total_seconds() >= policy.suspend_after)


def next_check(policy: Policy, now: datetime, outcome: str, failures: int,
               interval: float, retry_after: float | None, suspended: bool = False,
               rng: random.Random | None = None) -> datetime:
    """Next poll time after an outcome; `failures` counts this one if it failed."""
    rand = rng or random
    if suspended:
        delay = policy.suspended_retry
    elif outcome in (fetch.OK, fetch.NOT_MODIFIED):
        delay = interval
    elif outcome == fetch.RATE_LIMITED:
        delay = max(interval, policy.retry_failed_after)
    else:
        delay = min(policy.retry_failed_after * 2 ** max(0, failures - 1), policy.max_backoff)
    delay *= 1 + rand.uniform(-JITTER, JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.suspended_retry))
    return now + timedelta(seconds=delay)

