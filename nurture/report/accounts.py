"""The report's "Hot accounts" section: the accounts in their model's top band, as the last accounts run
left them (only for portfolios with an account model). A pure renderer like the others."""

import polars as pl
from sqlalchemy import Engine

from nurture.report.sections import ReportScope, Section
from store.accounts import read_last_account_scores

HOT_ACCOUNTS = 20


def account_lines(scope: ReportScope) -> list[str]:
    """The reported lines that declare an account model."""
    lines = scope.portfolio.product_lines
    return [shape.name for shape in scope.shapes if lines[shape.name].account_model is not None]


def read_hot_accounts(engine: Engine, scope: ReportScope) -> pl.DataFrame:
    """Per line, the top ``HOT_ACCOUNTS`` accounts of the model's top band at the report's time."""
    frames = []
    for name in account_lines(scope):
        line = scope.portfolio.product_lines[name]
        bands = (line.account_model.bands if line.account_model else None) or line.spec.bands
        top = bands.ordered[-1][0]
        frame = read_last_account_scores(engine, name, scope.generated_at).filter(pl.col("band") == top)
        ordered = frame.sort(["score", "account_id"], descending=[True, False]).head(HOT_ACCOUNTS)
        frames.append(ordered.with_columns(pl.lit(name).alias("product_line")))
    return pl.concat(frames) if frames else pl.DataFrame()


def hot_accounts_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """The hot accounts with their score, qualifications and members."""
    rows = [
        {
            "product line": row["product_line"],
            "account": row["account_id"],
            "score": round(row["score"], 1),
            "qualifications": ", ".join(row["qualifications"] or []) or "-",
            "members": row["members"],
            "since run": row["run_id"],
        }
        for row in frame.iter_rows(named=True)
    ]
    return Section(
        "hot-accounts",
        "Hot accounts",
        f"The accounts in the top band of their line's account model (up to {HOT_ACCOUNTS} per line, highest "
        "score first), with the qualifications they hold and how many leads they have.",
        ["product line", "account", "score", "qualifications", "members", "since run"],
        rows,
        [],
        None if rows else "No account is in the top band yet.",
    )
