"""Columnar validation of a chunk of CSV lead rows (Polars over the cells).

A row whose every cell passes the vectorised checks becomes a new lead's stored values without a row
model. The checks are narrower than the model (printable-ASCII emails, flags spelled true/false/yes/no/
1/0, plain ISO-8601 times, a lead id that appears once in the chunk, known product lines of interest):
every other row goes to the row model, which accepts or rejects it in the same words as ever. Whether a
checked lead is new is only known inside the chunk's transaction; a stored one is validated by the row
model there and compared with what is stored, like any other update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from store.bulk import json_text
from store.ingest.columns import ODD_EDGE, PLAIN_TIME, epoch_micros
from store.ingest.reading import Raw
from store.ingest.rows import LEAD_FIELDS
from store.ingest.split import CsvPlan, Splitter, csv_plan

# Lead fields in their stored form, in the order of ``NewLeads.frame``'s columns.
TEXT_FIELDS = ("first_name", "last_name", "phone", "company", "city", "state", "zip", "country")
EMAIL_FIELDS = ("email", "owner_email")
FLAG_FIELDS = ("email_opt_in", "ads_opt_in")
TIME_FIELDS = ("unsubscribed_at", "bounced_at")
STORED = ("lead_id", *EMAIL_FIELDS, *TEXT_FIELDS, *FLAG_FIELDS, *TIME_FIELDS, "attributes")
SCHEMA = {
    name: pl.Boolean if name in FLAG_FIELDS else pl.Int64 if name in TIME_FIELDS else pl.String for name in STORED
}
_EMAIL = r'^[^@,;<>()\[\]"]+@[^@,;<>()\[\]"]+\.[^@,;<>()\[\]".]{2,}$'  # rows.py's rule, on [!-~] only
_TRUE, _FALSE = ["true", "yes", "1"], ["false", "no", "0", ""]
_INTEREST = "product_interest"
_SPLIT_LINES = re.compile(r"[,;]")


def interest_lines(attributes: dict[str, Any]) -> list[str]:
    """The product lines a lead's ``product_interest`` attribute names (a list, or text split on , and ;)."""
    value = attributes.get(_INTEREST)
    if value is None:
        return []
    parts = value if isinstance(value, list) else _SPLIT_LINES.split(str(value))
    seen: dict[str, None] = {}
    for part in parts:
        text = str(part).strip()
        if text:
            seen[text] = None
    return list(seen)


@dataclass
class NewLeads:
    """The chunk's rows that passed the checks: their positions, rows, interest lines and stored values."""

    positions: list[int] = field(default_factory=list)
    rows: list[Raw] = field(default_factory=list)
    lines: list[list[str]] = field(default_factory=list)
    frame: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SCHEMA))
    lead_ids: list[str] = field(default_factory=list)


@dataclass
class LeadColumns:
    """Checks chunks of one CSV file; the plan (which cell is which field) is kept per header."""

    product_lines: frozenset[str] | None
    splitter: Splitter = field(default_factory=lambda: Splitter(LEAD_FIELDS))
    plan_names: list[str] | None = None
    plan: CsvPlan = field(default_factory=list)

    def split(self, rows: list[Raw]) -> tuple[NewLeads, list[int]]:
        """The rows the columns accept, and the positions of the others (for the row model)."""
        everything = list(range(len(rows)))
        if not rows or rows[0].values is None:
            return NewLeads(), everything
        if rows[0].names is not self.plan_names:
            self.plan_names, self.plan = rows[0].names, csv_plan(self.splitter, rows[0].names or [])
        where = {role: position for position, role, _ in self.plan if role is not None}
        if len(where) != sum(role is not None for _, role, _ in self.plan) or "lead_id" not in where:
            return NewLeads(), everything  # repeated or missing fields: the row model decides
        cells = list(zip(*(row.values or () for row in rows), strict=True))
        frame = pl.DataFrame({f"c{p}": pl.Series(values, dtype=pl.String) for p, values in enumerate(cells)})
        result = frame.select(*self._checks(where), *self._values(where))
        ok = result["ok"]
        fast = result.filter(ok).drop("ok")
        positions = ok.arg_true().to_list()
        slow = ok.not_().arg_true().to_list()
        lines = self._interest_lines(fast)
        keep = [n for n, found in enumerate(lines) if found is not None]
        if len(keep) < len(positions):  # an unknown product line: the row model's reject explains it
            slow = sorted(slow + [p for p, found in zip(positions, lines, strict=True) if found is None])
            positions, fast = [positions[n] for n in keep], fast[keep]
        new = NewLeads(positions, [rows[p] for p in positions], [found for found in lines if found is not None])
        new.frame = fast.select(*STORED[:-1], attributes=self._attributes(fast)).cast(SCHEMA)  # type: ignore[arg-type]
        new.lead_ids = new.frame["lead_id"].to_list()
        return new, slow

    def _cell(self, where: dict[str, int], role: str) -> pl.Expr:
        return pl.col(f"c{where[role]}").str.strip_chars() if role in where else pl.lit("", dtype=pl.String)

    def _checks(self, where: dict[str, int]) -> list[pl.Expr]:
        cell = lambda role: self._cell(where, role)  # noqa: E731
        checks = [~pl.col(f"c{p}").str.strip_chars().str.contains(ODD_EDGE) for p, _, _ in self.plan]
        checks += [cell("lead_id") != "", ~cell("lead_id").is_duplicated()]
        for name in EMAIL_FIELDS:
            email = cell(name)
            valid = email.str.contains(r"^[!-~]+$") & email.str.to_lowercase().str.contains(_EMAIL)
            checks.append((email == "") | valid)
        checks += [cell(name).is_in(_TRUE + _FALSE) for name in FLAG_FIELDS]
        for name in TIME_FIELDS:
            checks.append(
                (cell(name) == "") | (cell(name).str.contains(PLAIN_TIME) & epoch_micros(cell(name)).is_not_null())
            )
        return [pl.all_horizontal(checks).alias("ok")]

    def _values(self, where: dict[str, int]) -> list[pl.Expr]:
        cell = lambda role: self._cell(where, role)  # noqa: E731
        blank_is_none = lambda expr: pl.when(expr == "").then(None).otherwise(expr)  # noqa: E731
        values = [blank_is_none(cell("lead_id")).alias("lead_id")]
        values += [blank_is_none(cell(name).str.to_lowercase()).alias(name) for name in EMAIL_FIELDS]
        values += [blank_is_none(cell(name)).alias(name) for name in TEXT_FIELDS]
        values += [cell(name).is_in(_TRUE).alias(name) for name in FLAG_FIELDS]
        values += [epoch_micros(cell(name)).alias(name) for name in TIME_FIELDS]
        values += [pl.col(f"c{p}").str.strip_chars().alias(f"a{p}") for p, role, _ in self.plan if role is None]
        return values

    def _attributes(self, fast: pl.DataFrame) -> pl.Series:
        """Every other column is a free attribute, kept as text; a blank cell sets nothing on a new lead."""
        names = [(f"a{p}", name) for p, role, name in self.plan if role is None]
        if not names:
            return pl.Series([json_text({})] * fast.height, dtype=pl.String)
        columns = [fast[column].to_list() for column, _ in names]
        keys = [name for _, name in names]
        texts = [json_text({k: v for k, v in zip(keys, row, strict=True) if v}) for row in zip(*columns, strict=True)]
        return pl.Series(texts, dtype=pl.String)

    def _interest_lines(self, fast: pl.DataFrame) -> list[list[str] | None]:
        """Each row's product lines of interest (None: a line the portfolio does not know)."""
        column = next((f"a{p}" for p, role, name in self.plan if role is None and name == _INTEREST), None)
        if column is None:
            return [[] for _ in range(fast.height)]
        known = self.product_lines
        found: list[list[str] | None] = []
        for text in fast[column].to_list():
            lines = interest_lines({_INTEREST: text}) if text else []
            found.append(None if known is not None and any(ln not in known for ln in lines) else lines)
        return found
