"""Every Prometheus metric, defined once, with base units and bounded labels.

Labels are only ever drawn from fixed sets (outcomes, states, notifier names
from the config, reasons); never a URL, feed name or title.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from monitor import __version__
from monitor.feeds.fetch import OUTCOMES

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

BUILD_INFO = Info("storywatch_build", "Version of the running Storywatch.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

FETCHES = Counter("storywatch_feed_fetches_total", "Feed fetches by outcome.", ["outcome"],
                  registry=REGISTRY)
FETCH_DURATION = Histogram(
    "storywatch_feed_fetch_duration_seconds", "Time to fetch one feed.", registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
FETCH_BYTES = Histogram(
    "storywatch_feed_fetch_size_bytes", "Size of fetched feed bodies.", registry=REGISTRY,
    buckets=(1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6, 1.5e7))
SCHEDULE_LAG = Gauge("storywatch_schedule_lag_seconds",
                     "How overdue the most overdue feed is (0 when the daemon keeps up).",
                     registry=REGISTRY)
POLL_DELAY = Histogram(
    "storywatch_feed_poll_delay_seconds", "How late each feed was when its poll started.",
    registry=REGISTRY, buckets=(0.5, 1, 5, 15, 60, 300, 900, 3600))
HOSTS_HELD = Gauge("storywatch_hosts_held", "Hosts we wait for because of Retry-After.",
                   registry=REGISTRY)
PARSER_RESTARTS = Counter("storywatch_parser_restarts_total",
                          "Parser processes killed for overrunning their time limit or dying.",
                          registry=REGISTRY)
OFFLOAD_RESTARTS = Counter("storywatch_offload_restarts_total",
                           "Offload processes (story text analysis) replaced after dying or "
                           "overrunning their time limit.", registry=REGISTRY)
LAST_SUCCESSFUL_POLL = Gauge("storywatch_last_successful_poll_timestamp_seconds",
                             "Unix time of the last fetch that succeeded.", registry=REGISTRY)
FEEDS = Gauge("storywatch_feeds", "Feeds by state.", ["state"], registry=REGISTRY)
FEED_STATES = ("active", "failing", "suspended", "disabled", "gone", "blocked")

ENTRIES = Counter("storywatch_entries_total", "Entries seen, by kind.", ["kind"],
                  registry=REGISTRY)
ENTRY_KINDS = ("new", "updated", "duplicate")

STORIES = Counter("storywatch_story_events_total", "Story changes, by kind.", ["kind"],
                  registry=REGISTRY)
STORY_EVENT_KINDS = ("created", "joined", "source_added")
CLUSTER_REASONS = Counter("storywatch_story_assignments_total",
                          "How entries were placed into stories.", ["reason"],
                          registry=REGISTRY)
ASSIGNMENT_REASONS = ("new_story", "exact_guid", "exact_url", "exact_content", "near_copy",
                      "cluster")
CLUSTER_DURATION = Histogram(
    "storywatch_story_cluster_duration_seconds", "Time to place one entry into a story.",
    registry=REGISTRY, buckets=(1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1))
OPEN_STORIES = Gauge("storywatch_open_stories", "Stories inside the clustering window.",
                     registry=REGISTRY)
STORY_BACKLOG = Gauge("storywatch_story_backlog_entries",
                      "Entries stored but not yet clustered (the story stage's queue).",
                      registry=REGISTRY)
STORY_INDEX_READY = Gauge("storywatch_story_index_ready",
                          "1 once the story index is rebuilt and the story stage runs.",
                          registry=REGISTRY)
SNAPSHOT_LOADS = Counter("storywatch_story_snapshot_loads_total",
                         "Starts by what became of the saved story index (loaded, absent, "
                         "refused: then rebuilt from the database).", ["result"],
                         registry=REGISTRY)
SNAPSHOT_LOAD_RESULTS = ("loaded", "absent", "refused")
SNAPSHOT_SAVES = Counter("storywatch_story_snapshot_saves_total",
                         "Story index saves, by result (ok, error).", ["result"],
                         registry=REGISTRY)
SNAPSHOT_BYTES = Gauge("storywatch_story_snapshot_bytes", "Size of the last saved story index.",
                       registry=REGISTRY)
SNAPSHOT_PAUSE = Histogram(
    "storywatch_story_snapshot_pause_seconds",
    "Time the event loop stood still to start a save (the fork).", registry=REGISTRY,
    buckets=(1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))

RULES_LOADED = Gauge("storywatch_rules_loaded", "Enabled rules currently loaded.",
                     registry=REGISTRY)
RULE_EVALUATIONS = Counter("storywatch_rule_evaluations_total",
                           "Story changes evaluated against the rule set.", registry=REGISTRY)
RULE_MATCHES = Counter("storywatch_rule_matches_total", "Rule matches, by alert change.",
                       ["change"], registry=REGISTRY)
RULE_RELOADS = Counter("storywatch_rule_reloads_total", "Rule reloads, by result.", ["result"],
                       registry=REGISTRY)

DELIVERIES = Counter("storywatch_deliveries_total", "Delivery attempts by notifier and outcome.",
                     ["notifier", "outcome"], registry=REGISTRY)
DELIVERY_OUTCOMES = ("delivered", "retry", "dead")
DELIVERY_DURATION = Histogram(
    "storywatch_delivery_duration_seconds", "Time of one delivery attempt.", ["notifier"],
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
OUTBOX_PENDING = Gauge("storywatch_outbox_pending", "Deliveries waiting in the outbox.",
                       registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge("storywatch_outbox_oldest_pending_age_seconds",
                          "Age of the oldest pending delivery.", registry=REGISTRY)
DEAD_LETTERS = Gauge("storywatch_outbox_dead_letters", "Deliveries that gave up.",
                     registry=REGISTRY)
RESENDS = Counter("storywatch_alert_resends_total",
                  "Re-sends of firing alerts to receivers that forget them (Alertmanager).",
                  ["notifier", "result"], registry=REGISTRY)

DB_ERRORS = Counter("storywatch_db_errors_total", "Database errors, by operation.",
                    ["operation"], registry=REGISTRY)
DB_OPERATIONS = ("ingest", "claim", "deliver", "housekeeping", "upkeep")
CONFIG_ERRORS = Counter("storywatch_config_errors_total",
                        "Invalid config or rule files met at load or reload.",
                        registry=REGISTRY)

RULE_MATCHES_BY_RULE = Counter("storywatch_rule_matches_by_rule_total",
                               "Rule matches per rule id (\"other\" past MAX_RULE_LABELS rules).",
                               ["rule_id"], registry=REGISTRY)
MAX_RULE_LABELS = 100
SUPPRESSIONS = Counter("storywatch_alert_suppressions_total",
                       "Rule matches that raised no alert change, by reason.", ["reason"],
                       registry=REGISTRY)
SUPPRESSION_REASONS = ("duplicate", "inhibited", "silenced", "outside_active_hours", "throttled",
                       "digested")
ALERTS = Gauge("storywatch_alerts", "Alerts by state.", ["state"], registry=REGISTRY)
ALERT_STATES = ("firing", "resolved", "digest")
DB_SIZE = Gauge("storywatch_database_size_bytes", "Size of the database on disk.",
                registry=REGISTRY)
SCHEDULER_LAST_TICK = Gauge("storywatch_scheduler_last_tick_timestamp_seconds",
                            "Unix time the dispatch tick last ran.", registry=REGISTRY)
PRUNED = Counter("storywatch_retention_pruned_total",
                 "Rows removed or emptied by retention, by kind.", ["kind"], registry=REGISTRY)
PRUNE_KINDS = ("entry_bodies", "entries", "tombstones", "stories", "alerts", "rule_state")
UPKEEP_DURATION = Histogram(
    "storywatch_upkeep_duration_seconds", "Time of one retention and vacuum run.",
    registry=REGISTRY, buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300))
LAST_UPKEEP = Gauge("storywatch_last_upkeep_timestamp_seconds",
                    "Unix time of the last completed retention and vacuum run.",
                    registry=REGISTRY)


def rule_label(rule_id: str, rules_loaded: int) -> str:
    """Per-rule labels only while the rule set is small enough to keep cardinality bounded."""
    return rule_id if rules_loaded <= MAX_RULE_LABELS else "other"


def init_labels(notifiers: list[str]) -> None:
    """Create every bounded label combination at zero so rates exist from the start."""
    for outcome in OUTCOMES:
        FETCHES.labels(outcome)
    for state in FEED_STATES:
        FEEDS.labels(state)
    for kind in ENTRY_KINDS:
        ENTRIES.labels(kind)
    for result in SNAPSHOT_LOAD_RESULTS:
        SNAPSHOT_LOADS.labels(result)
    for kind in STORY_EVENT_KINDS:
        STORIES.labels(kind)
    for reason in ASSIGNMENT_REASONS:
        CLUSTER_REASONS.labels(reason)
    for change in ("firing", "updated", "resolved"):
        RULE_MATCHES.labels(change)
    for result in ("ok", "error"):
        RULE_RELOADS.labels(result)
        SNAPSHOT_SAVES.labels(result)
    for op in DB_OPERATIONS:
        DB_ERRORS.labels(op)
    for metric, values in ((SUPPRESSIONS, SUPPRESSION_REASONS), (ALERTS, ALERT_STATES),
                           (PRUNED, PRUNE_KINDS)):
        for value in values:
            metric.labels(value)
    for name in notifiers:
        DELIVERY_DURATION.labels(name)
        for outcome in DELIVERY_OUTCOMES:
            DELIVERIES.labels(name, outcome)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
