"""Exclusions: leads never nurtured nor retargeted, whatever their score (``nurture: exclusions:``).

A student whose fit rule clamps the score to 0, a competitor, a lead with an open opportunity or a
customer of the line: scoring says how interested a lead is, exclusions say who must not be marketed
to at all. Each named exclusion takes exactly one test::

    exclusions:
      students: {attribute: job_title, in: [student, intern]}      # a lead column or attributes key
      competitors: {attribute: is_competitor, in: [true]}
      open-opportunity: {product_line: crm, stages: [opportunity]}  # a journey of that line there now
      crm-customers: {product_line: crm, statuses: [customer]}
      do-not-contact: {file: do_not_contact.csv}                    # an email or a domain column

Attribute values compare case-insensitively as text (``true`` matches a JSON ``true``). ``excluded``
is the one function that decides it, over frames; nurture enrolment and exits and every audience
export call it, so email and ads cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.files import SpecError, line_of, validate_part
from models.spec import Spec
from stages.portfolio import Portfolio
from store.csvfile import open_csv

EXCLUDED_SCHEMA: dict[str, pl.DataType] = {"lead_key": pl.Int64(), "excluded": pl.Utf8()}


class Exclusion(Spec):
    attribute: str | None = None
    in_: list[str | int | float | bool] | None = Field(default=None, alias="in")
    product_line: str | None = None
    stages: list[str] | None = None
    statuses: list[str] | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        tests = {
            "attribute": self.attribute is not None,
            "stages": self.stages is not None,
            "statuses": self.statuses is not None,
            "file": self.file is not None,
        }
        given = [name for name, present in tests.items() if present]
        if len(given) != 1:
            raise ValueError(f"an exclusion has exactly one of {', '.join(tests)}; got {given or 'none'}")
        if (self.attribute is None) != (self.in_ is None):
            raise ValueError("attribute and in go together: {attribute: job_title, in: [student]}")
        if (self.stages is not None or self.statuses is not None) != (self.product_line is not None):
            raise ValueError("stages and statuses name their product_line (and only they do)")
        return self


class Exclusions(BaseModel):
    """The portfolio's exclusions, with the listed emails and domains of ``file`` exclusions read."""

    model_config = ConfigDict(frozen=True)
    rules: dict[str, Exclusion] = Field(default_factory=dict)
    listed: dict[str, tuple[frozenset[str], frozenset[str]]] = Field(default_factory=dict)  # (emails, domains)

    @property
    def product_lines(self) -> list[str]:
        return sorted({rule.product_line for rule in self.rules.values() if rule.product_line})


def excluded(exclusions: Exclusions, leads: pl.DataFrame, journeys: pl.DataFrame) -> pl.DataFrame:
    """``lead_key, excluded``: each excluded lead with the name of the first exclusion it meets.

    ``leads``: ``lead_key, email, attributes`` (JSON text) and any lead column an exclusion names;
    ``journeys``: ``lead_key, product_line, stage, status``."""
    parts: list[pl.DataFrame] = [pl.DataFrame(schema=EXCLUDED_SCHEMA)]
    email = pl.col("email").str.strip_chars().str.to_lowercase()
    for name, rule in exclusions.rules.items():
        if rule.attribute is not None:
            value = (
                pl.col(rule.attribute).cast(pl.Utf8)
                if rule.attribute in leads.columns
                else pl.col("attributes").str.json_path_match(f"$.{rule.attribute}")
            )
            wanted = [str(v).lower() for v in rule.in_ or []]
            hit = leads.filter(value.str.strip_chars().str.to_lowercase().is_in(wanted))
        elif rule.file is not None:
            emails, domains = exclusions.listed[name]
            domain = email.str.split("@").list.last()
            hit = leads.filter(email.is_in(list(emails)) | domain.is_in(list(domains)))
        else:
            test = pl.col("product_line") == rule.product_line
            if rule.stages is not None:
                test &= pl.col("stage").is_in(rule.stages) & ~pl.col("status").is_in(["customer", "lost"])
            if rule.statuses is not None:
                test &= pl.col("status").is_in(rule.statuses)
            hit = journeys.filter(test)
        parts.append(hit.select("lead_key", pl.lit(name).alias("excluded")).cast(EXCLUDED_SCHEMA))
    return pl.concat(parts).unique("lead_key", keep="first", maintain_order=True).sort("lead_key")


def read_listed(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """The emails and domains of a CSV with an ``email`` and/or ``domain`` column (lower-cased)."""
    emails: set[str] = set()
    domains: set[str] = set()
    with open_csv(path) as (names, rows):
        lowered = [name.lower() for name in names]
        if "email" not in lowered and "domain" not in lowered:
            raise ValueError(f"{path}: needs an email or a domain column; the header has {names}")
        for row in rows:
            for column, into in (("email", emails), ("domain", domains)):
                if column in lowered and not row.error:
                    value = row.values[lowered.index(column)].strip().lower().lstrip("@")
                    if value:
                        into.add(value)
    return frozenset(emails), frozenset(domains)


class _Nurture(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    exclusions: dict[str, Exclusion] = Field(default_factory=dict)


def load_exclusions(portfolio: Portfolio) -> Exclusions:
    """The exclusions under ``nurture: exclusions:``, their files read (relative to the portfolio)."""
    node = portfolio.node
    rules = validate_part(portfolio.path, node, portfolio.spec.nurture, _Nurture, at=("nurture",)).exclusions
    problems: list[tuple[str, int | None, str]] = []
    listed: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for name, rule in rules.items():
        at: list[Any] = ["nurture", "exclusions", name]
        if rule.product_line is not None:
            line = portfolio.product_lines.get(rule.product_line)
            if line is None:
                known = sorted(portfolio.product_lines)
                message = f"unknown product line {rule.product_line!r}; known: {known}"
                problems.append((".".join(at), line_of(node, at), message))
                continue
            names = [stage.name for stage in line.stages]
            for stage in rule.stages or []:
                if stage not in names:
                    problems.append((".".join(at), line_of(node, at), f"unknown stage {stage!r}; stages: {names}"))
        if rule.file is not None:
            path = rule.file if rule.file.is_absolute() else Path(portfolio.path).parent / rule.file
            try:
                listed[name] = read_listed(path)
            except (OSError, ValueError) as exc:
                problems.append((".".join(at), line_of(node, at), f"cannot read {path}: {exc}"))
    if problems:
        raise SpecError(portfolio.path, problems)
    return Exclusions(rules=rules, listed=listed)
