"""Give back to the kernel the C heap that start-up used and freed (glibc's ``malloc_trim``).

Start-up leaves holes in the C heap that glibc keeps for later: each module's ``.pyc`` is read
whole into a buffer and freed once unmarshalled, and libVLC, the YAML loader and the first SQLite
queries free their scratch memory.  Nothing idle reuses most of it, so the daemon would carry
about 1 MB of free heap in its RSS for as long as it runs (bench/link_bench.py's idle figures).
``malloc_trim(0)`` releases every free page of the heap, not only its top.  It is called once
when the agent is ready; a C library without it (musl) simply keeps its pages.
"""

from __future__ import annotations

import ctypes
import gc
import logging

logger = logging.getLogger(__name__)

GLIBC = "libc.so.6"


def return_freed_heap() -> bool:
    """Collect start-up's cyclic garbage, then trim the C heap; False where the C library cannot."""
    gc.collect()
    try:
        trim = ctypes.CDLL(GLIBC).malloc_trim
    except (OSError, AttributeError):  # no glibc: its malloc keeps its pages
        logger.debug("%s has no malloc_trim: the heap is not trimmed", GLIBC)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
