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
from functools import cache

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
ARENAS = 2


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless ``MALLOC_ARENA_MAX`` already says how many; True when capped.

    Arenas made before the call stay, so this runs as a flow or the CLI starts (``flows/startup.py``),
    before the task runner's threads exist. Anywhere but glibc (macOS, musl) it does nothing.
    """
    libc = None if "MALLOC_ARENA_MAX" in os.environ else _libc()
    mallopt = getattr(libc, "mallopt", None)
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Hand the memory glibc keeps free inside its heaps back to the system; True when it released some.

    Between two pipeline steps nothing of the step before is alive, but glibc returns freed memory to
    the system only from the top of a heap: the pages a step freed below a block still in use stay in
    the process, and the next step's peak adds to them. ``malloc_trim`` releases every free page.
    """
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    return malloc_trim is not None and bool(malloc_trim(0))
