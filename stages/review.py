"""The portfolio's ``monitoring:`` section as the model review's inputs: one reading for the review flow, the
report and the console, so they judge alike."""

from models.learning.review import ReviewSettings
from models.spec import Bands
from stages.portfolio import Portfolio


def review_settings(portfolio: Portfolio) -> ReviewSettings:
    """The portfolio's ``monitoring:`` as the review's thresholds (the flow and the report judge alike)."""
    monitoring = portfolio.spec.monitoring
    return ReviewSettings(
        auc_floor=monitoring.auc_floor,
        mql_to_opportunity_target=monitoring.mql_to_opportunity_target,
        min_leads_per_band=monitoring.min_leads_per_band,
    )


def stage_bands(portfolio: Portfolio) -> dict[tuple[str, str], Bands]:
    return {(line.name, s.name): s.bands for line in portfolio.product_lines.values() for s in line.funnel}
