"""The group writer: while intake is busy, a commit lingers so that the requests answered by the last one
join the next; an idle service commits a lone request at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from service.writer import GroupWriter


def _scenario(linger: float) -> tuple[list[int], float]:
    """Two requests at once, a third during their commit, a fourth 50 ms after it; then two lone ones.
    Returns the items per commit and how long the last lone request waited."""
    groups: list[int] = []

    def take(kind: str, items: list[Any]) -> list[dict[str, Any]]:
        groups.append(len(items))
        time.sleep(0.05)  # the commit
        return [{"index": n, "status": "stored"} for n in range(len(items))]

    async def run() -> float:
        writer = GroupWriter(take, 100, serialize_calls=False, linger=linger)
        await writer.start()
        first = [asyncio.create_task(writer.take("events", [n])) for n in range(2)]
        await asyncio.sleep(0.02)
        third = asyncio.create_task(writer.take("events", [3]))
        await asyncio.gather(*first)
        await asyncio.sleep(0.05)
        assert await asyncio.gather(third, writer.take("events", [4])) == [[{"index": 0, "status": "stored"}]] * 2
        await writer.take("events", [5])  # after a busy commit: it lingers, alone
        began = time.monotonic()
        await writer.take("events", [6])  # after a lone commit: at once
        waited = time.monotonic() - began
        await writer.stop()
        return waited

    waited = asyncio.run(run())
    return groups, waited


def test_a_busy_writer_lingers_and_merges_the_next_requests() -> None:
    groups, waited = _scenario(linger=0.5)
    assert groups == [2, 2, 1, 1]
    assert waited < 0.4  # the commit (0.05 s), no linger


def test_without_linger_each_commit_takes_what_has_arrived() -> None:
    groups, _ = _scenario(linger=0.0)
    assert groups == [2, 1, 1, 1, 1]
