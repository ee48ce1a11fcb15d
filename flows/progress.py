"""Progress of the flows running in this process, for whoever watches them: the CLI's progress bars.

A flow says how far it is with ``report``; nothing happens unless a listener was installed with
``watching``, so a scheduled run pays nothing. Flows report from their own process (task completions are
seen through their futures), which works the same on threads, processes or a Dask cluster.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

# (what, done, total, detail): "scoring partitions", 12, 80, "" or "daily pipeline", 1, 5, "score"
Listener = Callable[[str, int, int, str], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


@contextmanager
def watching(listener: Listener) -> Iterator[None]:
    """Send the progress of the flows run inside this block to ``listener``."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def report(what: str, done: int, total: int, detail: str = "") -> None:
    """``done`` of ``total`` units of ``what`` are finished; ``detail`` names the unit under way."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(what, done, total, detail)


@contextmanager
def progress_bars(console: Console) -> Iterator[None]:
    """Show the flows' progress as rich bars on ``console`` (one per kind of work), gone when done."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bars:
        tasks: dict[str, TaskID] = {}

        def show(what: str, done: int, total: int, detail: str) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total)
            description = f"{what}: {escape(detail)}" if detail else what
            bars.update(tasks[what], completed=done, total=total, description=description)

        with watching(show):
            yield
