"""Per-notifier retry policy: what a failed attempt leads to, as a pure decision.

5xx, 408/425/429, timeouts and connection errors are retried with full-jitter
exponential backoff (never sooner than `Retry-After`); other 4xx are
permanent. A row past `max_attempts` or `max_age` becomes a dead letter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from monitor.alerts.notify.base import Outcome
from monitor.config import DeliveryConfig, NotifierConfig

DELIVERED, RETRY, DEAD = "delivered", "retry", "dead"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_age: float
    backoff_initial: float
    backoff_max: float

    @classmethod
    def of(cls, defaults: DeliveryConfig, cfg: NotifierConfig | None) -> RetryPolicy:
        """The notifier's own settings, each falling back to `delivery:`."""
        def pick(own: float | None, default: float) -> float:
            return default if own is None else own

        return cls(
            max_attempts=int(pick(cfg.max_attempts if cfg else None, defaults.max_attempts)),
            max_age=pick(cfg.max_age if cfg else None, defaults.max_age),
            backoff_initial=pick(cfg.backoff_initial if cfg else None, defaults.backoff_initial),
            backoff_max=pick(cfg.backoff_max if cfg else None, defaults.backoff_max))

    def backoff(self, attempts: int, retry_after: float | None,
                rng: random.Random | None = None) -> float:
        """Seconds before the next attempt: jittered exponential, at least `Retry-After`."""
        cap = min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempts - 1))
        delay = (rng or random).uniform(cap / 2, cap)
        return max(delay, retry_after or 0.0)

    def decide(self, outcome: Outcome, attempts: int, age: float) -> str:
        """`attempts` counts this one; `age` is seconds since the row was queued."""
        if outcome.ok:
            return DELIVERED
        if outcome.retryable and attempts < self.max_attempts and age < self.max_age:
            return RETRY
        return DEAD
