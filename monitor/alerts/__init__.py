"""Alerts: the outbox, payloads, and delivery to notifiers."""
