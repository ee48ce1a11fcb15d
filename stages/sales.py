"""The sales hand-off declared in the portfolio (``sales:``): why sales may reject a qualified journey, where a
rejected one is recycled, and how long a qualification may wait in the queue (the SLA)."""

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import Field

from models.spec import Spec


class SalesSpec(Spec):
    """``reject_reasons``: code → label shown to sales; ``recycle_tracks``: product line → the nurture track a
    rejected journey goes back to; ``sla_hours``: qualification → hours sales has to answer;
    ``digest_alerts_above``: an owner whose immediate alerts of one run outnumber this gets them as one
    digest email (a first run on a back-filled store crosses thousands of thresholds); null: never."""

    reject_reasons: dict[str, str] = Field(default_factory=dict)
    recycle_tracks: dict[str, str] = Field(default_factory=dict)
    sla_hours: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    digest_alerts_above: Annotated[int, Field(ge=1)] | None = 20

    def due(self, qualification: str, reached_at: datetime) -> datetime | None:
        """When sales must have answered a journey that reached ``qualification`` (None: no SLA)."""
        hours = self.sla_hours.get(qualification)
        return None if hours is None else reached_at + timedelta(hours=hours)

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per qualification with an SLA: an item that reached it before this time is overdue at ``now``."""
        return {name: now - timedelta(hours=hours) for name, hours in self.sla_hours.items()}
