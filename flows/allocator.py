"""Keep glibc's allocator from hoarding memory in the processes that run flows and tasks.

glibc gives every thread that allocates its own malloc arena (up to 8 per core), and memory freed in
an arena mostly stays in the process. Scoring threads each read a partition through ADBC/libpq and
write through psycopg, so every arena grows to a partition's worth and keeps it: on the 200k-lead
PostgreSQL benchmark the pipeline process peaked at 3.3 GB, and at 2.2 GB with two arenas
(``benchmarks/daily.py``; Polars and Arrow allocate through their own allocators, untouched).
"""

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless ``MALLOC_ARENA_MAX`` already says how many; True when capped.

    Arenas made before the call stay, so this runs when ``flows`` is first imported, before the task
    runner's threads exist. Anywhere but glibc (macOS, musl) it does nothing.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
