"""Hand the C heap's free pages back to the operating system after a large load.

Loading the story index allocates and frees large transient buffers (the
pickle's payloads). glibc's allocator raises its threshold for serving large
blocks from their own mappings after such frees, so later buffers come from
the heap, and once freed they stay in the process, counted in its RSS, until
something reuses them: about 50 MB after loading a 200,000-entry window.
`malloc_trim` returns every free page of the heap at once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim` from the symbols the process already has loaded (libc among
    them): `ctypes.util.find_library` would run `ldconfig` in a subprocess at start-up."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


_TRIM = _malloc_trim()


def trim() -> bool:
    """Release the heap's free pages: True if any were (never without glibc)."""
    return _TRIM is not None and bool(_TRIM(0))
