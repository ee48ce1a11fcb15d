"""Where the service's writes go: on SQLite through one writer task, on PostgreSQL straight to the store.

SQLite takes one writer at a time; requests that each opened a write transaction would queue on its
lock and fail with "database is locked" under load. Here requests enqueue, and a single task commits
what has gathered in one transaction: consecutive intake requests of the same kind are merged into
one ingestion call (thousands of single events a second become a few dozen commits), other writes run
one by one in order. PostgreSQL handles concurrent writers itself: ``DirectWriter`` just runs the work
in a thread.
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


class DirectWriter:
    """PostgreSQL: each request writes in its own transaction, concurrently."""

    def __init__(self, take: Take) -> None:
        self.take_items = take

    async def take(self, kind: str, items: list[Any]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.take_items, kind, items)

    async def call(self, work: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(work)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class SingleWriter(DirectWriter):
    """SQLite: one task, one thread, one write transaction at a time; intake merged per kind."""

    def __init__(self, take: Take, max_items: int) -> None:
        super().__init__(take)
        self.max_items = max_items
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def take(self, kind: str, items: list[Any]) -> list[dict[str, Any]]:
        return await self._submit(kind, items)

    async def call(self, work: Callable[[], Any]) -> Any:
        return await self._submit("call", work)

    async def _submit(self, kind: str, payload: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(kind, payload, future))
        return await future

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="leadscore-sqlite-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        pending: deque[_Job] = deque()
        while True:
            if not pending:
                pending.append(await self.queue.get())
            while not self.queue.empty():
                pending.append(self.queue.get_nowait())
            batch = [pending.popleft()]
            if batch[0].kind != "call":
                kind, count = batch[0].kind, len(batch[0].payload)
                while pending and pending[0].kind == kind and count + len(pending[0].payload) <= self.max_items:
                    count += len(pending[0].payload)
                    batch.append(pending.popleft())
            await self._commit(batch)

    async def _commit(self, batch: Sequence[_Job]) -> None:
        try:
            if batch[0].kind == "call":
                results: list[Any] = [await asyncio.to_thread(batch[0].payload)]
            else:
                merged = [item for job in batch for item in job.payload]
                answers = await asyncio.to_thread(self.take_items, batch[0].kind, merged)
                results, start = [], 0
                for job in batch:  # each request gets its own items' answers, indexed from 0
                    part = answers[start : start + len(job.payload)]
                    results.append([{**answer, "index": answer["index"] - start} for answer in part])
                    start += len(job.payload)
        except Exception as exc:  # every waiting request hears of it; the writer goes on with the next
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
