"""Pure CPU work in a second process, running ahead of the caller that needs its results.

The story stage is one thread: it must place entries one after another, since
each decision depends on the ones before. Analysing an entry's text (tokens,
stems, names, SimHash) depends on nothing but the text, and is about half of
the stage's CPU. `Offload.run` hands that work to a child process in chunks,
several chunks ahead, so on a machine with a second core the two halves run at
once. The results are the ones the function gives in this process; only where
it runs differs. If the child cannot start, dies, overruns `timeout` or
raises, the work is done here instead (and the child replaced on the next
call), so the caller sees a slower result, never a missing one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from typing import Any, TypeVar

from monitor import children, metrics

log = logging.getLogger(__name__)

CHUNK = 64
"""Calls per request: enough to amortise a round trip (~20 us) and pickling's overheads."""
FIRST_CHUNK = 4
"""Calls in a run's first request, doubled per request up to CHUNK: the caller waits
for the first one (a batch of the story stage starts each run), so it is small."""
AHEAD = 4
"""Requests in flight: the child keeps working while the caller handles a chunk."""
RETRY_START = 300.0
"""Seconds to work in one process after a child could not start, before trying again."""
_CHILD = children.program("monitor.offload_main")

T = TypeVar("T")
R = TypeVar("R")


class Offload:
    """One child process (`offload_main`), used by one caller at a time.

    `func` must be a module-level function (it is pickled by name) that the
    child can import, and its arguments and results must pickle.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._child: children.Child | None = None
        self._seq = 0
        self._broken = False
        """The child died or overran: replace it at the next call."""
        self._retry_at = 0.0
        """`time.monotonic()` from which to try starting a child that could not start."""

    @property
    def pid(self) -> int | None:
        return self._child.proc.pid if self._child else None

    def run(self, func: Callable[..., R], items: Iterable[T],
            args: Callable[[T], tuple[Any, ...]]) -> Iterator[tuple[T, R]]:
        """Each item with `func(*args(item))`, in order; the child computes ahead.

        The child is started at the first item, not before: most of the story
        stage's runs (catching up with other instances) have none."""
        it = iter(items)
        head = list(islice(it, 1))
        if not head:
            return
        it = chain(head, it)
        child = self._start()
        pending: deque[tuple[int, list[T]]] = deque()
        size = FIRST_CHUNK
        try:
            while child is not None:
                while len(pending) < AHEAD:
                    chunk = list(islice(it, size))
                    size = min(2 * size, CHUNK)
                    if not chunk:
                        break
                    self._seq += 1
                    pending.append((self._seq, chunk))
                    child.conn.send((self._seq, func, [args(item) for item in chunk]))
                if not pending:
                    return
                results = self._receive(child, pending[0][0])
                if results is None:
                    break
                _, chunk = pending.popleft()
                yield from zip(chunk, results, strict=True)
        except (EOFError, OSError) as exc:  # the child died, or its socket did
            self._fail(f"{type(exc).__name__}: {exc}")
        for item in chain.from_iterable((*(chunk for _, chunk in pending), it)):
            yield item, func(*args(item))

    def _receive(self, child: children.Child, seq: int) -> list[Any] | None:
        """The results of request `seq`, or None: do the rest here.

        Replies to requests of an earlier, abandoned run are skipped."""
        while True:
            if not child.conn.poll(self.timeout):
                self._fail(f"no answer within {self.timeout:g}s")
                return None
            got, kind, value = child.conn.recv()
            if got < seq:
                continue
            if kind == "ok":
                assert isinstance(value, list)
                return value
            log.warning("offload process: %s; doing this work here", value)
            return None

    def _start(self) -> children.Child | None:
        """The child, started if need be; None while it cannot be (retried after RETRY_START)."""
        if self._child is not None and (self._broken or not self._child.alive()):
            self._child.kill()
            self._child = None
            metrics.OFFLOAD_RESTARTS.inc()
        self._broken = False
        if self._child is None and time.monotonic() >= self._retry_at:
            try:
                self._child = children.Child(_CHILD, "an offload process")
            except (RuntimeError, OSError) as exc:
                log.warning("working in one process for %gs: %s", RETRY_START, exc)
                self._retry_at = time.monotonic() + RETRY_START
        return self._child

    def _fail(self, why: str) -> None:
        log.warning("offload process failed (%s); doing its work here", why)
        self._broken = True

    def close(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None
