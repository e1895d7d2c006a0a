"""Freed heap memory goes back to the operating system when the daemon asks."""

from __future__ import annotations

import subprocess
import sys

from monitor import heap
from tests.conftest import need

# Blocks below glibc's mmap threshold come from the heap; keeping one in ten
# pins the heap's top, so freeing the rest leaves free pages inside it.
SCRIPT = """
from monitor import heap
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])
blocks = [bytearray(8000) for _ in range(40_000)]
kept = blocks[::10]
del blocks
before = rss()
trimmed = heap.trim()
print(trimmed, before - rss())
"""


def test_trim_returns_freed_heap_pages() -> None:
    need(heap._TRIM is not None, "glibc's malloc_trim (this C library has none)")
    trimmed, released_kib = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                                           text=True, check=True).stdout.split()
    assert trimmed == "True"
    assert int(released_kib) > 200_000  # of the 288 MB freed
