"""Columnar checks of a chunk of CSV lead rows (Polars over the cells): the leads fast path.

A row whose every cell passes the vectorised checks gets its stored values without a row model. The
checks are deliberately narrower than ``LeadRow`` (printable-ASCII emails, flags spelled
true/false/yes/no/1/0, plain ISO-8601 times, a lead id that appears once in the chunk, known product
lines of interest, nobody erased): every other row goes to the row model, which accepts or rejects it
in the same words as the reference path. Attributes become their stored JSON text in Polars too, and the
product lines of interest and claimed visitors are parsed there. A lead that turns out to be stored is
compared with its stored form in Polars (``changing``); only one whose content changes is merged in
Python, by the reference's merge (``merge_inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any

import polars as pl

from store.bulk import json_text
from store.ingest.columns import PLAIN_TIME, epoch_micros
from store.ingest.csv_chunks import CsvChunk
from store.ingest.reading import Raw, loads
from store.ingest.rows import LEAD_FIELDS
from store.ingest.split import CsvPlan, Splitter, csv_plan
from store.tables import from_micros
from store.tombstones import Erased

TEXT_FIELDS = ("first_name", "last_name", "phone", "company", "city", "state", "zip", "country", "account_id")
EMAIL_FIELDS = ("email", "owner_email")
FLAG_FIELDS = ("email_opt_in", "ads_opt_in")
TIME_FIELDS = ("unsubscribed_at", "bounced_at")
STORED = ("lead_id", *EMAIL_FIELDS, *TEXT_FIELDS, *FLAG_FIELDS, *TIME_FIELDS, "attributes")
SCHEMA: dict[str, Any] = {
    name: pl.Boolean if name in FLAG_FIELDS else pl.Int64 if name in TIME_FIELDS else pl.String for name in STORED
}
CLAIMS: dict[str, Any] = {"lead_id": pl.String, "value": pl.String}  # a lead's product line, or visitor
INTEREST = "product_interest"
VISITORS = "anonymous_ids"
# rows.py's rule on printable ASCII only (where lower-casing changes no class), in one pass over the cell.
_EMAIL = r'^[!-~&&[^@,;<>()\[\]"]]+@[!-~&&[^@,;<>()\[\]"]]+\.[!-~&&[^@,;<>()\[\]".]]{2,}$'
# A NUL (PostgreSQL refuses it), or a separator character Python's str.strip removes and Polars' does not:
# anywhere in a row, the row model reads it.
_ODD = r"[\x00\x1c-\x1f]"
_TRUE, _FALSE = ["true", "yes", "1"], ["false", "no", "0", ""]
_VALUES = attrgetter("values")


def listed(cell: pl.Expr) -> pl.Expr:
    """A list attribute's text as a list (split on , and ;, parts stripped, blanks and repeats dropped):
    what ``leads._listed`` makes of a CSV cell."""
    parts = cell.str.replace_all(";", ",", literal=True).str.split(",")
    stripped = parts.list.eval(pl.element().str.strip_chars())
    return stripped.list.eval(pl.element().filter(pl.element() != "")).list.unique(maintain_order=True)


def _known_lines(lines: frozenset[str]) -> str:
    """A cell whose every part (split on , and ;, stripped) is blank or one of ``lines``: what ``listed``
    makes of it holds known lines only (Rust regex syntax; each name's characters as ``\\x{…}``)."""
    name = "|".join("".join(f"\\x{{{ord(c):x}}}" for c in line) for line in sorted(lines))
    part = rf"\s*(?:{name})?\s*" if lines else r"\s*"
    return rf"^{part}(?:[,;]{part})*$"


def claimed(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``CLAIMS`` pairs from a list column of ``frame`` (one pair per lead and element)."""
    return frame.select("lead_id", pl.col(column).alias("value")).explode("value").drop_nulls().cast(CLAIMS)


@dataclass
class CheckedLeads:
    """The chunk's rows the columns accepted, in file order: chunk positions, stored values (``frame``,
    ``SCHEMA`` columns), product lines of interest and claimed visitors (``CLAIMS`` pairs), and what a
    stored lead's merge needs: the fields the header names and the attribute cells."""

    positions: list[int] = field(default_factory=list)
    frame: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SCHEMA))
    lines: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CLAIMS))
    visitors: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CLAIMS))
    present: frozenset[str] = frozenset()
    attributes: dict[str, pl.Series] = field(default_factory=dict)

    @cached_property
    def lead_ids(self) -> list[str]:
        return self.frame["lead_id"].to_list()

    def changing(self, stored: pl.DataFrame) -> list[int]:
        """The indexes of the rows whose stored lead (``stored``: the lead id, the fields the file names and
        the attributes' JSON text, in ``SCHEMA`` types) the reference's merge would change: a field the
        file names differs (a sticky time only when earlier), an attribute cell differs from the stored
        attribute or a blank one clears a stored attribute. Attributes stored as the very text the row
        would store are unchanged without a look; only the others are compared as dicts."""
        old = stored.rename({name: f"{name}_old" for name in stored.columns if name != "lead_id"})
        joined = self.frame.with_row_index("n").join(old, on="lead_id")
        same = [
            (pl.min_horizontal(name, f"{name}_old") if name in TIME_FIELDS else pl.col(name)).eq_missing(
                pl.col(f"{name}_old")
            )
            for name in self.present
        ]
        checked = joined.select(
            "n",
            "attributes_old",
            fields=pl.all_horizontal(True, *same),
            text=pl.col("attributes").eq_missing(pl.col("attributes_old")),
        )
        changing = checked.filter(~pl.col("fields"))["n"].to_list()
        unsure = checked.filter(pl.col("fields") & ~pl.col("text"))
        indexes = unsure["n"]
        names = list(self.attributes)
        cells = [column.gather(indexes).to_list() for column in self.attributes.values()]
        for n, text, *values in zip(indexes.to_list(), unsure["attributes_old"].to_list(), *cells, strict=True):
            if not _same_attributes(loads(text) or {}, names, values):
                changing.append(n)
        return sorted(changing)

    def merge_inputs(self, indexes: list[int]) -> list[tuple[dict[str, Any], dict[str, Any], set[str]]]:
        """Rows ``indexes`` as the row model gives them for a merge with their stored lead: the values of
        the fields the file names (Python types), the attributes set and the attribute names cleared."""
        present = sorted(self.present)
        rows = self.frame[indexes].select(present).to_dicts()
        cells = {name: column.gather(indexes).to_list() for name, column in self.attributes.items()}
        inputs = []
        for k, values in enumerate(rows):
            for name in TIME_FIELDS:
                if values.get(name) is not None:
                    values[name] = from_micros(values[name])
            attributes = {name: found[k] for name, found in cells.items() if found[k]}
            cleared = {name for name, found in cells.items() if not found[k]}
            inputs.append((values, attributes, cleared))
        return inputs


def _same_attributes(old: dict[str, Any], names: list[str], cells: list[str]) -> bool:
    """Whether a row's attribute cells leave the stored attributes as they are (a blank cell clears)."""
    return all((old.get(name) == cell) if cell else (name not in old) for name, cell in zip(names, cells, strict=True))


@dataclass
class LeadColumns:
    """Checks chunks of one CSV file; the plan (which cell is which field) is kept per header."""

    product_lines: frozenset[str] | None
    erased: Erased | None = None
    splitter: Splitter = field(default_factory=lambda: Splitter(LEAD_FIELDS))
    plan_names: list[str] | None = None
    plan: CsvPlan = field(default_factory=list)

    def split(self, chunk: list[Raw] | CsvChunk) -> tuple[CheckedLeads, list[int]]:
        """The rows the columns accept, and the positions of the others (for the row model): a chunk Polars
        read (``CsvChunk``), or CSV rows the ``csv`` module read."""
        if isinstance(chunk, CsvChunk):
            names, cells = chunk.names, chunk.cells
        elif chunk and chunk[0].values is not None:
            names = chunk[0].names or []
            cells = pl.DataFrame(list(map(_VALUES, chunk)), schema=dict.fromkeys(names, pl.String), orient="row")
        else:
            return CheckedLeads(), list(range(len(chunk)))
        everything = list(range(cells.height))
        if names is not self.plan_names:
            self.plan_names, self.plan = names, csv_plan(self.splitter, names)
        where = {role: position for position, role, _ in self.plan if role is not None}
        if len(where) != sum(role is not None for _, role, _ in self.plan) or "lead_id" not in where:
            return CheckedLeads(), everything  # repeated or missing fields: the row model decides
        frame = cells.rename({name: f"c{p}" for p, name in enumerate(names)})
        attribute_cells = {name: f"a{p}" for p, role, name in self.plan if role is None}
        result = frame.select(*self._checks(where), *self._values(where))
        ok = result["ok"]
        slow = ok.not_().arg_true().to_list()
        if self.erased is not None or slow:
            ok = self._narrowed(frame, ok, slow, result, where["lead_id"])
            slow = ok.not_().arg_true().to_list()
        fast = result.filter(ok)
        checked = CheckedLeads(ok.arg_true().to_list())
        checked.frame = fast.select(*STORED[:-1], attributes=self._attributes(attribute_cells)).cast(SCHEMA)
        checked.lines, checked.visitors = claimed(fast, "lines"), claimed(fast, "visitors")
        checked.present = frozenset(where) - {"lead_id"}
        checked.attributes = {name: fast[column] for name, column in attribute_cells.items()}
        return checked, slow

    def _narrowed(
        self, frame: pl.DataFrame, ok: pl.Series, slow: list[int], result: pl.DataFrame, at: int
    ) -> pl.Series:
        """Leave to the row model the rows of erased people, and the rows whose lead id the row model
        reads as one of a slow row's (a separator character at its edge, which Polars does not strip)."""
        taken = {cell.strip() for cell in frame[f"c{at}"].gather(slow).to_list()}
        lead_ids, emails = result["lead_id"].to_list(), result["email"].to_list()
        erased = self.erased
        kept = [
            good and lead_id not in taken and (erased is None or erased.match(lead_id, email) is None)
            for good, lead_id, email in zip(ok.to_list(), lead_ids, emails, strict=True)
        ]
        return pl.Series(kept, dtype=pl.Boolean)

    def _cell(self, where: dict[str, int], role: str) -> pl.Expr:
        return pl.col(f"c{where[role]}").str.strip_chars() if role in where else pl.lit("", dtype=pl.String)

    def _checks(self, where: dict[str, int]) -> list[pl.Expr]:
        def cell(role: str) -> pl.Expr:
            return self._cell(where, role)

        every_cell = pl.concat_str([pl.col(f"c{p}") for p, _, _ in self.plan], separator=",")
        checks = [~every_cell.str.contains(_ODD), cell("lead_id") != "", ~cell("lead_id").is_duplicated()]
        checks += [(cell(name) == "") | cell(name).str.contains(_EMAIL) for name in EMAIL_FIELDS]
        checks += [cell(name).is_in(_TRUE + _FALSE) for name in FLAG_FIELDS]
        for name in TIME_FIELDS:
            plain = cell(name).str.contains(PLAIN_TIME) & epoch_micros(cell(name)).is_not_null()
            checks.append((cell(name) == "") | plain)
        if self.product_lines is not None:
            checks.append(self._interest_cell().str.contains(_known_lines(self.product_lines)))
        return [pl.all_horizontal(checks).alias("ok")]

    def _interest_cell(self) -> pl.Expr:
        return self._attribute_cell(INTEREST)

    def _attribute_cell(self, attribute: str) -> pl.Expr:
        found = next((p for p, role, name in self.plan if role is None and name == attribute), None)
        return pl.lit("", dtype=pl.String) if found is None else pl.col(f"c{found}")

    def _values(self, where: dict[str, int]) -> list[pl.Expr]:
        def blank_is_none(expr: pl.Expr) -> pl.Expr:
            return pl.when(expr == "").then(None).otherwise(expr)

        values = [blank_is_none(self._cell(where, "lead_id")).alias("lead_id")]
        values += [blank_is_none(self._cell(where, n).str.to_lowercase()).alias(n) for n in EMAIL_FIELDS]
        values += [blank_is_none(self._cell(where, name)).alias(name) for name in TEXT_FIELDS]
        values += [self._cell(where, name).is_in(_TRUE).alias(name) for name in FLAG_FIELDS]
        values += [epoch_micros(self._cell(where, name)).alias(name) for name in TIME_FIELDS]
        values += [pl.col(f"c{p}").str.strip_chars().alias(f"a{p}") for p, role, _ in self.plan if role is None]
        values += [
            listed(self._interest_cell()).alias("lines"),
            listed(self._attribute_cell(VISITORS)).alias("visitors"),
        ]
        return values

    @staticmethod
    def _attributes(columns: dict[str, str]) -> pl.Expr:
        """The attributes' JSON text: every non-blank attribute cell, stripped, as a string member, in
        header order (``json_text`` of the dict the row model builds)."""
        members = [
            pl.when(pl.col(column) != "").then(
                pl.concat_str(pl.lit(json_text(name) + ":"), _json_string(pl.col(column)))
            )
            for name, column in columns.items()
        ]
        if not members:
            return pl.lit("{}", dtype=pl.String)
        return pl.concat_str(pl.lit("{"), pl.concat_str(members, separator=",", ignore_nulls=True), pl.lit("}"))


def _json_string(text: pl.Expr) -> pl.Expr:
    """Text as a JSON string literal: Polars encodes ``{"v": text}``, the literal is what follows ``{"v":``."""
    return pl.struct(text.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
