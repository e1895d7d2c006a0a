"""Work handed to the offload process comes back as if done here, whatever happens to it.

The child is a real process; it is killed with SIGKILL, made to hang, made to
fail to start and made to raise, and every run still yields every item's
result, in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import children, offload
from monitor.metrics import REGISTRY
from monitor.offload import Offload
from monitor.stories.features import analyse
from tests.helpers import ROOT, wait_until
from tests.story_fixtures import NEIGHBOURS, PARAPHRASES

TEXTS = [(title, text) for _, _, _, title, text in PARAPHRASES + NEIGHBOURS]
MANY = list(range(offload.CHUNK * (offload.AHEAD + 3) + 5))
"""More items than the requests in flight, with a last chunk that is not full."""


def double(x: int, parent: int) -> int:
    """x * 2; in any process but `parent`, raises on 7 (to test the child's error replies)."""
    if x == 7 and os.getpid() != parent:
        raise ValueError("only the parent does sevens")
    return x * 2


def twice(x: int) -> int:
    return x * 2


def slow_in_child(x: int, parent: int) -> int:
    if os.getpid() != parent:
        signal.pause()  # hangs until killed
    return x * 2


def large(x: int) -> bytes:
    return bytes([x % 256]) * 300_000


KILLED_PARENT = """
import os
from monitor.offload import Offload
from tests.test_offload import twice
work = Offload()
assert list(work.run(twice, [1, 2, 3], lambda x: (x,))) == [(1, 2), (2, 4), (3, 6)]
print(work.pid, flush=True)
os.kill(os.getpid(), 9)
"""


def restarts() -> float:
    return REGISTRY.get_sample_value("storywatch_offload_restarts_total") or 0.0


@pytest.fixture
def worker() -> Iterator[Offload]:
    work = Offload(timeout=30)
    yield work
    work.close()


def args(x: int) -> tuple[int, int]:
    return x, os.getpid()


def test_results_are_the_ones_computed_here(worker: Offload) -> None:
    texts = TEXTS * 20
    got = list(worker.run(analyse, texts, lambda t: t))
    assert worker.pid is not None and worker.pid != os.getpid()
    assert [item for item, _ in got] == texts
    assert [result for _, result in got] == [analyse(*t) for t in texts]


def test_no_items_start_no_child(worker: Offload) -> None:
    assert list(worker.run(twice, [], lambda x: (x,))) == [] and worker.pid is None


def test_large_results_do_not_block_either_side(worker: Offload) -> None:
    got = list(worker.run(large, MANY, lambda x: (x,)))
    assert [r == large(x) for x, r in got] == [True] * len(MANY)


def test_a_child_killed_mid_run_is_replaced_and_nothing_is_lost(worker: Offload) -> None:
    before = restarts()
    run = worker.run(twice, MANY, lambda x: (x,))
    first = [next(run) for _ in range(3)]
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    got = first + list(run)
    assert got == [(x, 2 * x) for x in MANY]
    assert list(worker.run(twice, [1, 2], lambda x: (x,))) == [(1, 2), (2, 4)]
    assert worker.pid not in (None, pid) and restarts() == before + 1


def test_an_error_in_the_child_is_redone_here_and_keeps_the_child(worker: Offload) -> None:
    got = list(worker.run(double, MANY, args))
    assert got == [(x, 2 * x) for x in MANY]
    pid = worker.pid
    assert list(worker.run(double, [3], args)) == [(3, 6)] and worker.pid == pid


def test_a_hung_child_is_given_up_after_the_timeout_and_replaced() -> None:
    work = Offload(timeout=0.5)
    try:
        before = restarts()
        assert list(work.run(slow_in_child, [1, 2, 3], args)) == [(1, 2), (2, 4), (3, 6)]
        hung = work.pid
        assert list(work.run(double, [5], args)) == [(5, 10)]
        assert work.pid not in (None, hung) and restarts() == before + 1
    finally:
        work.close()


def test_replies_to_an_abandoned_run_are_not_taken_for_the_next(worker: Offload) -> None:
    run = worker.run(double, MANY, args)
    assert next(run) == (0, 0)
    run.close()  # requests still in flight: their replies must be skipped
    others = [x + 1000 for x in MANY]
    assert list(worker.run(double, others, args)) == [(x, 2 * x) for x in others]


def test_the_child_never_outlives_its_parent_even_a_killed_one() -> None:
    parent = subprocess.run([sys.executable, "-c", KILLED_PARENT], capture_output=True,
                            text=True, cwd=ROOT, timeout=120, check=False)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = Path(f"/proc/{int(parent.stdout)}/stat")

    def gone() -> bool:  # exited: no process, or a zombie waiting for init to reap it
        try:
            return child.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
    wait_until(gone)


def test_a_child_that_cannot_start_leaves_the_work_here(monkeypatch: pytest.MonkeyPatch,
                                                         worker: Offload) -> None:
    monkeypatch.setattr(offload, "RETRY_START", 1.0)
    monkeypatch.setattr(offload, "_CHILD", children.program("monitor.no_such_module"))
    assert list(worker.run(double, MANY, args)) == [(x, 2 * x) for x in MANY]
    assert worker.pid is None
    monkeypatch.setattr(offload, "_CHILD", children.program("monitor.offload_main"))
    assert list(worker.run(double, [4], args)) == [(4, 8)]
    assert worker.pid is None, "not retried before RETRY_START"
    time.sleep(1.1)
    assert list(worker.run(double, [4], args)) == [(4, 8)] and worker.pid is not None
