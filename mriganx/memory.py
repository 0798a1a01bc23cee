"""Keep freed memory in the process for the next training step or batch instead of handing it back to the kernel.

glibc serves every allocation above a threshold (128 KiB at start, raised by its own heuristic as large blocks are
freed) with fresh ``mmap`` pages and unmaps them on ``free``. A training step allocates and frees hundreds of MiB of
activations, so without this every step pays the kernel to zero-fill those pages again: measured on the ``cpu``
config, 0.78 -> 0.65 s per step, and a large 3x3 convolution ran at 409 instead of 480 GFLOP/s
(docs/performance.md). The price is that the resident size stays at its peak until the process ends, which for
training and conversion is where it goes back to at once anyway. Set ``MRIGANX_RELEASE_MEMORY=1`` to keep glibc's
default (``benchmarks/bench.py`` does, to show the difference).

>>> retain_freed_memory() in (True, False)   # False where the C library has no glibc-style mallopt
True
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB of free heap stays mapped


@functools.cache
def retain_freed_memory() -> bool:
    """Tell glibc's allocator to reuse freed heap memory instead of unmapping it; returns whether it took effect.

    A no-op (``False``) on other platforms and C libraries and with ``MRIGANX_RELEASE_MEMORY=1``. Setting it twice
    changes nothing, and it is only ever a speed setting: results do not depend on it.
    """
    if os.environ.get("MRIGANX_RELEASE_MEMORY", "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries
        return False
    # The mmap threshold first: fixing the trim threshold alone also freezes the mmap threshold at 128 KiB, which
    # sends every activation to mmap and made a step three times slower.
    return bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))
