"""Prefect's temporary server dies with the CLI process that started it.

Without a configured ``PREFECT_API_URL`` Prefect starts a temporary server as a child process and stops
it at exit; a CLI killed with SIGKILL never gets there, and the server stays orphaned (a port and
hundreds of MB) for good. ``tie_temporary_server`` arranges that each such server gets a watchdog: a
tiny process that notices its parent (the CLI) is gone and stops the server.

The server's class lives in a module that costs seconds to import, so it is patched when Prefect
imports it (only commands that run flows do), not up front.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

SERVER_MODULE = "prefect.server.api.server"
WATCHDOG = """
import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
while os.getppid() == parent and alive(server):
    time.sleep(0.5)
if alive(server):
    os.kill(server, signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.1)
        if not alive(server):
            sys.exit(0)
    os.kill(server, signal.SIGKILL)
"""


def _watch(server_pid: int) -> None:
    """Start the watchdog of ``server_pid`` for this process."""
    subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(server_pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the CLI's group reaches the server, not the watchdog
    )


def _tie(server_class: Any) -> None:
    start = server_class._run_uvicorn_command
    if getattr(start, "tied_to_parent", False):
        return

    def start_tied(self: Any) -> subprocess.Popen[Any]:
        process = start(self)
        _watch(process.pid)
        return process

    start_tied.tied_to_parent = True  # type: ignore[attr-defined]
    server_class._run_uvicorn_command = start_tied


class _OnImport(importlib.abc.MetaPathFinder):
    """Patches the server class right after Prefect imports its module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != SERVER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _tie(module.SubprocessASGIServer)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def tie_temporary_server() -> None:
    """Give every temporary Prefect server this process starts a watchdog (idempotent)."""
    if SERVER_MODULE in sys.modules:
        _tie(sys.modules[SERVER_MODULE].SubprocessASGIServer)
    elif not any(isinstance(finder, _OnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OnImport())
