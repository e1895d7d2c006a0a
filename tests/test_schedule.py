"""Scheduling rules as pure functions: adaptive interval, hints, backoff, suspension."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from monitor.feeds import fetch
from monitor.feeds.hosts import HostGate, host_of
from monitor.feeds.schedule import (
    Policy,
    interval_for,
    next_check,
    publish_interval,
    should_suspend,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy(default_interval=900, min_interval=900, max_interval=86400,
                retry_failed_after=300, max_backoff=86400, suspend_after_failures=10,
                suspend_after=7 * 86400, suspended_retry=7 * 86400)


def test_publish_interval_is_half_the_median_gap() -> None:
    hourly = [NOW - timedelta(hours=h) for h in range(10)]
    assert publish_interval(hourly) == 1800
    assert publish_interval([NOW]) is None
    assert publish_interval([NOW, NOW]) is None


def test_interval_bounds_and_server_hints() -> None:
    assert interval_for(POLICY, None, None) == 900
    assert interval_for(POLICY, None, 60) == 900  # never below the minimum
    assert interval_for(POLICY, None, 10 * 86400) == 86400  # never above the maximum
    assert interval_for(POLICY, None, 1800, (3600, None)) == 3600  # <ttl>/max-age raise it
    assert interval_for(POLICY, None, 7200, (60,)) == 7200  # ... but never lower it
    assert interval_for(POLICY, 1200, 7200) == 1200  # a configured interval wins


def test_backoff_grows_exponentially_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [(next_check(POLICY, NOW, fetch.HTTP_5XX, n, 900, None, rng=rng) - NOW)
              .total_seconds() for n in (1, 2, 3, 4, 20)]
    for got, base in zip(delays, (300, 600, 1200, 2400, 86400), strict=True):
        assert base * 0.9 <= got <= base * 1.1


def test_retry_after_is_honoured_and_jitter_spreads() -> None:
    later = next_check(POLICY, NOW, fetch.RATE_LIMITED, 0, 900, 5000)
    assert (later - NOW).total_seconds() >= 5000
    spread = {next_check(POLICY, NOW, fetch.OK, 0, 900, None) for _ in range(20)}
    assert len(spread) > 1


def test_suspension_needs_many_failures_over_days() -> None:
    assert not should_suspend(POLICY, 50, NOW - timedelta(days=1), NOW)
    assert not should_suspend(POLICY, 3, NOW - timedelta(days=30), NOW)
    assert should_suspend(POLICY, 10, NOW - timedelta(days=7), NOW)
    quiet = next_check(POLICY, NOW, fetch.HTTP_5XX, 10, 900, None, suspended=True)
    assert (quiet - NOW).total_seconds() >= 7 * 86400 * 0.9


def test_host_gate_caps_each_host() -> None:
    gate = HostGate(concurrency=2, spacing=0)
    assert host_of("https://Example.COM:8443/feed") == "example.com"
    gate.reserve("a")
    gate.reserve("a")
    assert gate.room("a") == 0 and gate.room("b") == 2
    gate.release("a")
    assert gate.room("a") == 1
