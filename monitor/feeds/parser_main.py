"""A parser process's main loop: feed bytes in, parsed and normalised entries out.

Started by `worker.ParsePool` with `main()` and FD, one end of a socket pair,
as its argument. It imports only the parser and the normaliser, not
the daemon's event loop, database or HTTP stacks, so each of these processes
stays small.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection

from monitor.feeds.parse import FeedParseError, ParsedFeed, parse
from monitor.stories.normalise import NormalisedEntry, normalise


@dataclass(frozen=True)
class Parsed:
    feed: ParsedFeed
    items: list[NormalisedEntry]
    """The feed's entries normalised as of the parse (the fetch time, to a few ms)."""


def serve(conn: Connection) -> None:
    """Bytes and content type in; ("ok", Parsed) or ("error", message) out, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", None))  # imports are done: the parse time limit starts clean
    while True:
        try:
            body, content_type = conn.recv()
        except (EOFError, OSError):
            return
        try:
            feed = parse(body, content_type)
            reply: tuple[str, object] = ("ok", Parsed(feed, normalise(feed.entries,
                                                                      datetime.now(UTC))))
        except FeedParseError as exc:
            reply = ("error", str(exc))
        except Exception as exc:
            reply = ("error", f"parser failed: {type(exc).__name__}: {exc}"[:500])
        conn.send(reply)


def main() -> None:
    """The process's entry (`python -c`, so that `Parsed` pickles under this module's name)."""
    serve(Connection(int(sys.argv[1])))
