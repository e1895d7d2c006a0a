"""Feeds: fetching over HTTP, parsing bodies, and deciding when to poll next."""
