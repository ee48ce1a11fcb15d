"""Importing ``flows`` caps glibc's malloc arenas, so scoring threads cannot each hoard a partition's memory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Six threads allocate at once (malloc gives a busy thread an arena of its own), then glibc lists its heaps.
PROBE = """
import ctypes, ctypes.util, sys, threading, tempfile
if sys.argv[1] == "flows":
    import flows
libc = ctypes.CDLL(ctypes.util.find_library("c"))
barrier = threading.Barrier(6)
def work():
    barrier.wait()
    blocks = [bytearray(4096) for _ in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
handle = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(handle))
libc.fclose(ctypes.c_void_p(handle))
print(open(path).read().count("<heap nr="))
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_flows_import_caps_the_arenas_that_threads_would_each_get() -> None:
    assert _arenas("plain") > 2  # without the cap, the threads get arenas of their own
    assert _arenas("flows") <= 2
