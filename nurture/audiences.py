"""Ad audiences: the spec in the portfolio, and the upload files and their diffs between exports.

An audience is a list of leads retargeted with ads. Its members are the leads added by nurture track
steps (``store.audiences.add_members``) plus, optionally, the journeys matching its ``where`` criteria.
An export turns the consenting members into one platform's customer-list file: its rows are normalised
and hashed by the platform's rules (``nurture.audience_rows``), each row becomes a CSV line here, and
the lines are diffed against what the previous export uploaded.
"""

import csv
from collections.abc import Callable
from typing import Annotated, Any, Literal, Self

import polars as pl
import pycountry
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from models.files import SpecError, line_of, validate_part
from models.spec import Spec
from stages.portfolio import Portfolio

Platform = Literal["meta", "google", "linkedin"]
PLATFORMS: tuple[Platform, ...] = ("meta", "google", "linkedin")
PHONE_PLATFORMS: frozenset[Platform] = frozenset({"meta", "google"})  # LinkedIn's template has no phone

COLUMNS: dict[str, list[str]] = {
    "meta": ["EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "EXTERN_ID"],
    "google": ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"],
    "linkedin": ["email", "firstname", "lastname", "jobtitle", "employeecompany", "country", "googleaid"],
}

# The columns each platform receives SHA-256 hashed: all that is kept of an erased lead's uploaded line.
HASHED: dict[str, frozenset[str]] = {
    "meta": frozenset(COLUMNS["meta"]) - {"EXTERN_ID"},
    "google": frozenset({"Email", "Phone", "First Name", "Last Name"}),
    "linkedin": frozenset({"email"}),
}

AudienceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=100)]


# ── the spec ────────────────────────────────────────────────────────────────────────────────


class AudienceWhere(Spec):
    """Criteria-based membership: the journeys of one product line that match, at export time."""

    product_line: str
    stages: list[str] | None = None
    bands: list[str] | None = None
    statuses: list[str] | None = None
    score_below: float | None = None
    score_at_least: float | None = None

    @model_validator(mode="after")
    def _score_range(self) -> Self:
        lo, hi = self.score_at_least, self.score_below
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"score_at_least {lo} must be below score_below {hi}: nobody would match")
        return self


class AudienceAccounts(Spec):
    """Account-based membership: every member of the accounts of one line's account model that are in
    one of ``bands`` (or hold one of ``qualifications``) as the last accounts run left them."""

    product_line: str
    bands: Annotated[list[str], Field(min_length=1)] | None = None
    qualifications: Annotated[list[str], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _criterion(self) -> Self:
        if self.bands is None and self.qualifications is None:
            raise ValueError("accounts: name bands or qualifications (e.g. bands: [hot])")
        return self


class AudienceSpec(Spec):
    """One audience: the platforms it is exported to, and who is in it besides the leads tracks add."""

    platforms: Annotated[list[Platform], Field(min_length=1)]
    description: str | None = None
    where: AudienceWhere | None = None
    accounts: AudienceAccounts | None = None
    default_country: str | None = None
    """ISO 3166 alpha-2 country of leads that have none: the region for phones written without ``+``."""

    @field_validator("platforms")
    @classmethod
    def _unique(cls, platforms: list[Platform]) -> list[Platform]:
        if len(set(platforms)) != len(platforms):
            raise ValueError(f"platforms are listed twice: {platforms}")
        return platforms

    @field_validator("default_country")
    @classmethod
    def _iso2(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) != 2 or pycountry.countries.get(alpha_2=value.upper()) is None:
            raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code (e.g. US, FR, DE)")
        return value.upper()


class _Lenient(BaseModel):
    """Reads only the part of the portfolio it knows (the rest is the portfolio's and the tracks' business)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Nurture(_Lenient):
    audiences: dict[AudienceName, AudienceSpec] = Field(default_factory=dict)


def load_audiences(portfolio: Portfolio) -> dict[str, AudienceSpec]:
    """The audiences under ``nurture: audiences:`` of the portfolio file; errors name file, line and path."""
    node = portfolio.node
    section = validate_part(portfolio.path, node, portfolio.spec.nurture, _Nurture, at=("nurture",))
    audiences = dict(section.audiences)
    problems: list[tuple[str, int | None, str]] = []

    def problem(loc: list[Any], message: str) -> None:
        dotted = ".".join(str(part) for part in loc if not isinstance(part, int))
        dotted += "".join(f"[{part}]" for part in loc if isinstance(part, int))
        problems.append((dotted, line_of(node, loc), message))

    for name, spec in audiences.items():
        if spec.accounts is not None:
            _check_accounts(portfolio, spec.accounts, ["nurture", "audiences", name, "accounts"], problem)
        where = spec.where
        if where is None:
            continue
        at = ["nurture", "audiences", name, "where"]
        line = portfolio.product_lines.get(where.product_line)
        if line is None:
            problem(
                [*at, "product_line"],
                f"unknown product line {where.product_line!r}; known: {sorted(portfolio.product_lines)}",
            )
            continue
        stage_names = [stage.name for stage in line.stages]
        for index, stage in enumerate(where.stages or []):
            if stage not in stage_names:
                problem(
                    [*at, "stages", index], f"unknown stage {stage!r} of {where.product_line}; stages: {stage_names}"
                )
        band_names = set(line.spec.bands.ranges).union(*(stage.bands.ranges for stage in line.stages))
        for index, band in enumerate(where.bands or []):
            if band not in band_names:
                problem(
                    [*at, "bands", index], f"unknown band {band!r} of {where.product_line}; bands: {sorted(band_names)}"
                )
    if problems:
        raise SpecError(portfolio.path, problems)
    return audiences


def _check_accounts(
    portfolio: Portfolio, accounts: AudienceAccounts, at: list[Any], problem: Callable[[list[Any], str], None]
) -> None:
    """The account criterion names a line with an account model, and its bands and qualifications."""
    line = portfolio.product_lines.get(accounts.product_line)
    model = line.account_model if line is not None else None
    if line is None or model is None:
        with_model = sorted(name for name, ln in portfolio.product_lines.items() if ln.account_model is not None)
        problem([*at, "product_line"], f"{accounts.product_line!r} has no account model; lines with one: {with_model}")
        return
    bands = set((model.bands or line.spec.bands).ranges)
    for index, band in enumerate(accounts.bands or []):
        if band not in bands:
            problem([*at, "bands", index], f"unknown account band {band!r}; bands: {sorted(bands)}")
    for index, name in enumerate(accounts.qualifications or []):
        if name not in model.qualifications:
            problem(
                [*at, "qualifications", index],
                f"unknown account qualification {name!r}; known: {sorted(model.qualifications)}",
            )


# ── files and diffs ─────────────────────────────────────────────────────────────────────────


def _csv_field(column: str) -> pl.Expr:
    """A CSV field as RFC 4180 writes it: quoted only when it holds a comma, a quote or a line break.

    A cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or
    a carriage return: a job title "=HYPERLINK(…)") is neutralised as OWASP's CSV-injection guidance
    says: a leading ``'`` and the field quoted."""
    text = pl.col(column).fill_null("")
    formula = text.str.contains(r"^[=+\-@\t\r]")
    text = pl.when(formula).then(pl.concat_str([pl.lit("'"), text])).otherwise(text)
    quoted = pl.concat_str([pl.lit('"'), text.str.replace_all('"', '""', literal=True), pl.lit('"')])
    return pl.when(formula | text.str.contains(r'[",\r\n]')).then(quoted).otherwise(text)


def with_lines(rows: pl.DataFrame, platform: Platform) -> pl.DataFrame:
    """``lead_key`` and ``line``: each row as its CSV line in the upload file.

    The line is what an export remembers of a lead, so the next export's removals are the exact lines
    uploaded before, even if the lead has since changed or been erased.
    """
    fields = [_csv_field(column) for column in COLUMNS[platform]]
    return rows.select("lead_key", pl.concat_str(fields, separator=",").alias("line"))


def header(platform: Platform) -> str:
    return ",".join(COLUMNS[platform])


def csv_text(platform: Platform, lines: pl.Series) -> str:
    """The whole upload file: the platform's header and one line per member."""
    return "\n".join([header(platform), *lines.to_list()]) + "\n"


def diff(current: pl.DataFrame, previous: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Adds and removes between two ``(lead_key, line)`` snapshots; a changed lead is in both."""
    keys = ["lead_key", "line"]
    adds = current.join(previous.select(keys), on=keys, how="anti").sort("lead_key")
    removes = previous.join(current.select(keys), on=keys, how="anti").sort("lead_key")
    return adds, removes


def hashed_line(platform: str, line: str) -> str:
    """An uploaded line with its plain cells blanked: what an erased lead's removal line carries.

    The platform matches a removal on the hashed identifiers; the plain ones (Meta's ``EXTERN_ID``,
    Google's country and zip, LinkedIn's names) are personal data the store must not keep after erasure.
    """
    cells = next(csv.reader([line]))
    kept = [cell if column in HASHED[platform] else "" for column, cell in zip(COLUMNS[platform], cells, strict=True)]
    return ",".join(kept)  # hashes are hex: no cell needs quoting
