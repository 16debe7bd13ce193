"""Keep freed large blocks in the process: a run allocates the same big arrays per image.

glibc returns every block over its ``mmap`` threshold (at most 32 MiB) to the system when it
is freed, so each image's fresh 2048²-and-larger float32 arrays (a resampled input, a model's
output, its way back) fault their pages in again. In this workplace's sandboxes a page fault
is expensive: 0.1–0.2 s of system time per 3318² array coming back to 2048²
(docs/BENCHMARKS.md). :func:`keep_large_blocks` raises the ``mmap`` and trim thresholds to
1 GiB, so freed blocks stay in the heap and the next image reuses them. Peak memory is what
the run needs anyway (+14 MB measured on three 2048² images). It is glibc's ``mallopt``, as
the environment variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would
set it; elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes

#: glibc's mallopt parameters (malloc.h) and the threshold set for both.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
THRESHOLD = 1 << 30


def keep_large_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds; True when glibc took both."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1
