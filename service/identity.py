"""``POST /v1/leads/merge`` and ``POST /v1/leads/unmerge``: the ``leadscore leads merge|unmerge`` of the
service (scope ``admin``). A merge is rare and all-or-nothing, so it writes directly, in one transaction,
whatever the store; refusals answer 422 with one line per bad pair."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, Field

from service.auth import require
from store.api_keys import KeyInfo
from store.merges import MergeError, Pair, merge, unmerge

router = APIRouter(prefix="/v1/leads", tags=["identity"])


class MergePair(BaseModel):
    survivor: str = Field(min_length=1, description="The lead that stays")
    merged: str = Field(min_length=1, description="The lead that becomes its alias")


class UnmergePair(BaseModel):
    merged: str = Field(min_length=1, description="The alias to make a lead of its own again")
    survivor: str | None = Field(default=None, description="Checked when given: the lead it is merged into")


class MergeRequest(BaseModel):
    pairs: list[MergePair] = Field(min_length=1, max_length=100_000)
    at: AwareDatetime | None = Field(default=None, description="When the merge takes effect (default now)")


class UnmergeRequest(BaseModel):
    pairs: list[UnmergePair] = Field(min_length=1, max_length=100_000)
    at: AwareDatetime | None = None


class MergeAnswer(BaseModel):
    merged: int = Field(description="Pairs merged now")
    already: int = Field(description="Pairs that were merged already (a repeated request is a no-op)")


class UnmergeAnswer(BaseModel):
    unmerged: int
    not_merged: int = Field(description="Leads that were no alias")


def _call(function: Any, *args: Any, **kwargs: Any) -> dict[str, int]:
    try:
        return function(*args, **kwargs)  # type: ignore[no-any-return]
    except MergeError as exc:
        raise HTTPException(422, str(exc).splitlines()) from exc


@router.post("/merge", response_model=MergeAnswer)
async def merge_leads(
    body: MergeRequest, request: Request, key: Annotated[KeyInfo, require("admin")]
) -> dict[str, int]:
    """Make each ``merged`` lead an alias of its ``survivor``: its events, adjustments and milestones count
    for the survivor from the next scoring run on. All pairs or none; chains resolve, cycles are refused."""
    pairs = [Pair(p.survivor, p.merged, f"pairs[{i}]") for i, p in enumerate(body.pairs)]
    engine = request.app.state.service.engine
    at = (body.at or datetime.now(UTC)).astimezone(UTC)
    return await run_in_threadpool(_call, merge, engine, pairs, at=at, source=f"api key {key.key_id}")


@router.post("/unmerge", response_model=UnmergeAnswer)
async def unmerge_leads(
    body: UnmergeRequest, request: Request, key: Annotated[KeyInfo, require("admin")]
) -> dict[str, int]:
    """Undo merges: both leads score apart again from the next run (replays of the merged period still merge)."""
    pairs = [Pair(p.survivor or "", p.merged, f"pairs[{i}]") for i, p in enumerate(body.pairs)]
    engine = request.app.state.service.engine
    at = (body.at or datetime.now(UTC)).astimezone(UTC)
    return await run_in_threadpool(_call, unmerge, engine, pairs, at=at)
