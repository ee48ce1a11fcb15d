"""A process that starts a flow (or the CLI) caps glibc's malloc arenas, so scoring threads cannot each hoard a
partition's memory; importing ``flows`` alone changes nothing process-wide."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Six threads allocate at once (malloc gives a busy thread an arena of its own); glibc lists its heaps
# before and after them. Imports start threads of their own (their arenas stay): what counts is the six.
PROBE = """
import ctypes, ctypes.util, sys, threading, tempfile
if sys.argv[1] != "plain":
    import flows.cli, flows.daily
if sys.argv[1] == "started":
    from flows.startup import prepare_process
    from store.settings import Settings
    prepare_process(Settings())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
def heaps():
    path = tempfile.mktemp()
    handle = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(handle))
    libc.fclose(ctypes.c_void_p(handle))
    return open(path).read().count("<heap nr=")
before = heaps()
barrier = threading.Barrier(6)
def work():
    barrier.wait()
    blocks = [bytearray(4096) for _ in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
print(heaps() - before)
"""


def _new_arenas(mode: str) -> int:
    """Arenas the six threads added."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_starting_a_flow_caps_the_arenas_that_threads_would_each_get() -> None:
    assert _new_arenas("plain") > 2  # without the cap, the threads get arenas of their own
    assert _new_arenas("imported") > 2  # importing has no process-wide effect
    assert _new_arenas("started") == 0  # capped: the threads share the arenas already there


# 120 MB of small blocks freed below one still in use: glibc cannot shrink its heap past that block.
TRIM_PROBE = """
import ctypes, ctypes.util, os
from flows.allocator import release_free_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
blocks = [libc.malloc(2048) for _ in range(60_000)]
for block in blocks:
    ctypes.memset(block, 1, 2048)
pinned = libc.malloc(2048)
for block in blocks:
    libc.free(ctypes.c_void_p(block))
before = rss()
released = release_free_memory()
print(released, before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_below_a_live_block_goes_back_to_the_system() -> None:
    done = subprocess.run([sys.executable, "-c", TRIM_PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    released, megabytes = done.stdout.split()
    assert released == "True"
    assert int(megabytes) >= 100  # of the 120 MB freed
