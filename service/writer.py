"""Where the service's writes go: intake is group-committed by one writer task per process.

Requests that each ran their own ingestion would pay its fixed cost (statements, a commit, the journey
check) per event, and on SQLite they would queue on its one write lock and fail with "database is
locked" under load. Here intake requests enqueue their items and wait; one task takes everything that
gathered while the previous commit ran, merges consecutive requests of the same kind into one ingestion
call (the columnar ``store.ingest`` path, one transaction) and answers each request with its own items'
results. Thousands of single events a second become a few dozen commits. Other writes (``call``) go
through the same queue on SQLite, one at a time in order; PostgreSQL takes concurrent writers, so there
they run at once in a thread.

``lanes``: intake commits a process runs at once. SQLite has one writer: one lane. On PostgreSQL an
ingestion call spends much of its time waiting for the server (a dozen round trips, then the commit's WAL
flush): with a second lane the next group is validated and sent while the first waits, instead of leaving
the process idle; the price is smaller groups, so more CPU per event when the CPU is the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# (kind, the items of one or more requests) → one answer per item, in order.
Take = Callable[[str, list[Any]], list[dict[str, Any]]]


@dataclass
class _Job:
    kind: str  # "events" | "leads" | "call"
    payload: Any  # the items, or the function of a "call"
    future: asyncio.Future[Any]


class GroupWriter:
    """One task, one thread, one intake transaction at a time; intake merged per kind.

    ``serialize_calls``: other writes queue behind intake too (SQLite's one writer); else they run at once.
    """

    def __init__(self, take: Take, max_items: int, serialize_calls: bool, linger: float = 0.0, lanes: int = 1) -> None:
        self.take_items = take
        self.max_items = max_items
        self.serialize_calls = serialize_calls
        self.linger = linger  # seconds an intake commit waits for more requests while the service is busy
        self.lanes = asyncio.Semaphore(1 if serialize_calls else lanes)  # SQLite: one writer, in order
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.commits: set[asyncio.Task[None]] = set()  # the commits running (referenced until they end)

    async def take(self, kind: str, items: list[Any]) -> list[dict[str, Any]]:
        return await self._submit(kind, items)

    async def call(self, work: Callable[[], Any]) -> Any:
        if not self.serialize_calls:
            return await asyncio.to_thread(work)
        return await self._submit("call", work)

    async def _submit(self, kind: str, payload: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(kind, payload, future))
        return await future

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="leadscore-writer")

    async def stop(self) -> None:
        for task in [self.task, *self.commits]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        pending: deque[_Job] = deque()
        busy = False  # the last commit answered several requests: more are on their way
        while True:
            if not pending:
                pending.append(await self.queue.get())
            await self.lanes.acquire()  # while every lane commits, requests gather for the next group
            if busy and self.linger and pending[0].kind != "call":
                # An intake commit costs a fixed few milliseconds whatever its size: while requests keep
                # coming, waiting a moment lets those whose answers just went out join this one.
                await asyncio.sleep(self.linger)
            while not self.queue.empty():
                pending.append(self.queue.get_nowait())
            batch = [pending.popleft()]
            if batch[0].kind != "call":
                kind, count = batch[0].kind, len(batch[0].payload)
                while pending and pending[0].kind == kind and count + len(pending[0].payload) <= self.max_items:
                    count += len(pending[0].payload)
                    batch.append(pending.popleft())
            busy = len(batch) > 1
            commit = asyncio.create_task(self._commit(batch))
            self.commits.add(commit)
            commit.add_done_callback(self.commits.discard)

    async def _commit(self, batch: Sequence[_Job]) -> None:
        try:
            await self._answer(batch)
        finally:
            self.lanes.release()

    async def _answer(self, batch: Sequence[_Job]) -> None:
        try:
            if batch[0].kind == "call":
                results: list[Any] = [await asyncio.to_thread(batch[0].payload)]
            else:
                merged = [item for job in batch for item in job.payload]
                answers = await asyncio.to_thread(self.take_items, batch[0].kind, merged)
                results, start = [], 0
                for job in batch:  # each request gets its own items' answers, indexed from 0
                    part = answers[start : start + len(job.payload)]
                    if start:
                        for answer in part:  # fresh dicts of this commit: renumbered in place
                            answer["index"] -= start
                    results.append(part)
                    start += len(job.payload)
        except Exception as exc:  # every waiting request hears of it; the writer goes on with the next
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
