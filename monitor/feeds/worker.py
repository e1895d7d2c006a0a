"""Parse feeds in worker processes with a time limit.

A pathological body (quadratic regular expressions, deeply nested markup)
can keep a parser busy for minutes while holding the GIL; in a thread that
stalls the whole event loop. Here each parse runs in a separate process; one
that overruns its time limit (or dies) is killed and replaced, and its feed
gets a parse error. The event loop only ever awaits. Workers also normalise
the entries, so that CPU work is spread over the worker processes too.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from monitor import children
from monitor.feeds.parse import FeedParseError
from monitor.feeds.parser_main import Parsed

__all__ = ["ParsePool", "Parsed"]

_CHILD = children.program("monitor.feeds.parser_main")


class _Worker(children.Child):
    """One parser process (`parser_main`) and our end of its socket pair."""

    def __init__(self) -> None:
        super().__init__(_CHILD, "a parser process")

    def roundtrip(self, body: bytes, content_type: str | None, timeout: float) -> Parsed:
        self.conn.send((body, content_type))
        if not self.conn.poll(timeout):
            raise TimeoutError
        kind, value = self.conn.recv()
        if kind == "ok":
            assert isinstance(value, Parsed)
            return value
        raise FeedParseError(str(value))


class ParsePool:
    """`size` worker processes; `parse()` awaits one without blocking the loop."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self.replaced = 0
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="storywatch-parse")
        self._idle: asyncio.Queue[_Worker | None] | None = None
        """Worker slots: a worker, or None where one could not be started."""
        self._all: list[_Worker] = []
        self._starting: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        """Start the workers without waiting for them.

        Each takes about a second to import the parser; meanwhile polls that need
        no parsing (304s) go ahead, and `parse()` waits for the first ready worker.
        """
        self._idle = asyncio.Queue()
        self._starting = [asyncio.ensure_future(self._start_one()) for _ in range(self.size)]

    async def _start_one(self) -> None:
        assert self._idle is not None
        try:
            worker: _Worker | None = await self._spawn()
        except FeedParseError:
            worker = None  # parse() tries again, and reports it if that fails too
        self._idle.put_nowait(worker)

    async def _spawn(self) -> _Worker:
        try:
            fresh = await asyncio.get_running_loop().run_in_executor(self._threads, _Worker)
        except (RuntimeError, OSError):
            raise FeedParseError("a parser process could not be started") from None
        self._all.append(fresh)
        return fresh

    async def parse(self, body: bytes, content_type: str | None) -> Parsed:
        """Parse in a worker; FeedParseError on bad input, on overrun or on a worker crash."""
        assert self._idle is not None, "ParsePool.start() first"
        loop = asyncio.get_running_loop()
        worker = await self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = await self._replace(worker)
            return await loop.run_in_executor(self._threads, worker.roundtrip, body,
                                              content_type, self.timeout)
        except FeedParseError:
            raise
        except asyncio.CancelledError:
            if worker is not None:
                worker.proc.kill()  # mid-parse: its late reply must not reach the next caller
            raise
        except TimeoutError:
            worker = await self._replace(worker)
            raise FeedParseError(f"parsing took longer than {self.timeout:g}s; "
                                 "the parser was stopped") from None
        except (EOFError, OSError) as exc:
            worker = await self._replace(worker)
            raise FeedParseError(f"the parser process died ({type(exc).__name__})") from None
        finally:
            self._idle.put_nowait(worker)

    async def _replace(self, worker: _Worker | None) -> _Worker:
        loop = asyncio.get_running_loop()
        self.replaced += 1
        if worker is not None:
            await loop.run_in_executor(self._threads, worker.kill)
            self._all = [w for w in self._all if w is not worker]
        return await self._spawn()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*self._starting, return_exceptions=True)
        for w in self._all:
            await loop.run_in_executor(self._threads, w.kill)
        self._all = []
        self._threads.shutdown(wait=False, cancel_futures=True)
