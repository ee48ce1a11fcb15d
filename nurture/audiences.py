"""Ad audiences: the spec in the portfolio, and each platform's upload rows, normalised and hashed.

An audience is a list of leads retargeted with ads. Its members are the leads added by nurture track
steps (``store.audiences.add_members``) plus, optionally, the journeys matching its ``where`` criteria.
An export turns the consenting members into one platform's customer-list file:

* Meta Custom Audience: ``EMAIL, PHONE, FN, LN, CT, ST, ZIP, COUNTRY, EXTERN_ID``; every identifier is
  normalised by Meta's rules and SHA-256 hashed, except ``EXTERN_ID`` (Meta does not hash it: it is the
  advertiser's own id). Names and cities are transliterated to a–z (``anyascii``), as Meta advises,
  rather than losing accented letters.
* Google Customer Match: ``Email, Phone, First Name, Last Name, Country, Zip``; email, phone and names
  hashed after Google's normalisation (the rules of Google's ``google-ads-datamanager-util``: trimmed,
  lower case, Gmail dots and ``+suffix`` removed, E.164 phones); country and zip stay plain, as Google
  asks.
* LinkedIn Matched Audiences (contact list template): ``email, firstname, lastname, jobtitle,
  employeecompany, country, googleaid``; LinkedIn accepts the email SHA-256 hashed and matches the
  other fields as plain text.

Everything here is set-based over Polars frames. The only per-value Python work (phone parsing,
transliteration, country look-ups, hashing) runs once per *distinct* value.
"""

import hashlib
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal, Self

import phonenumbers
import polars as pl
import pycountry
from anyascii import anyascii
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from models.files import SpecError, line_of, validate_part
from models.spec import Spec
from stages.portfolio import Portfolio
from store.shapes import AUDIENCE_LEAD_COLUMNS

Platform = Literal["meta", "google", "linkedin"]
PLATFORMS: tuple[Platform, ...] = ("meta", "google", "linkedin")
PHONE_PLATFORMS: frozenset[Platform] = frozenset({"meta", "google"})  # LinkedIn's template has no phone

COLUMNS: dict[str, list[str]] = {
    "meta": ["EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "EXTERN_ID"],
    "google": ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"],
    "linkedin": ["email", "firstname", "lastname", "jobtitle", "employeecompany", "country", "googleaid"],
}
# LinkedIn's template refuses longer values.
LINKEDIN_LIMITS = {"firstname": 35, "lastname": 35, "jobtitle": 50, "employeecompany": 50}

LEAD_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    **{name: pl.Utf8() for name in AUDIENCE_LEAD_COLUMNS},
    "job_title": pl.Utf8(),
}

# What an export remembers of each lead's parsed phone (see ``resolve_phones``).
PHONE_CACHE = ("cached_phone", "cached_region", "cached_e164")

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


class AudienceSpec(Spec):
    """One audience: the platforms it is exported to, and who is in it besides the leads tracks add."""

    platforms: Annotated[list[Platform], Field(min_length=1)]
    description: str | None = None
    where: AudienceWhere | None = None
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


# ── normalisation, one distinct value at a time ─────────────────────────────────────────────


def map_distinct(series: pl.Series, function: Callable[[str], str | None]) -> pl.Series:
    """``function`` applied once per distinct non-null value, spread back over the series (nulls stay null)."""
    distinct = series.drop_nulls().unique()
    mapped = pl.Series([function(value) for value in distinct.to_list()], dtype=pl.Utf8)
    return series.replace_strict(distinct, mapped, default=None, return_dtype=pl.Utf8).alias(series.name)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@cache
def country_code(value: str) -> str | None:
    """ISO 3166 alpha-2 (upper case) of a country given as a code or a name ("fr", "FRA", "France")."""
    text = value.strip()
    if not text:
        return None
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return None


@cache
def _us_states() -> dict[str, str]:
    """US state names and codes (lower case, letters only) → the two-letter code, lower case."""
    table: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code="US") or []:
        code = sub.code.split("-")[1].lower()
        table[code] = code
        table[_letters(sub.name)] = code
    return table


def _letters(value: str) -> str:
    """Transliterated to ASCII, lower case, letters a–z only (Meta's rule for names, cities, states)."""
    return "".join(ch for ch in anyascii(value).lower() if "a" <= ch <= "z")


def meta_name(value: str) -> str | None:
    """Meta FN/LN: a–z only, lower case, no punctuation; accented letters transliterated (Émilie → emilie)."""
    return _letters(value) or None


def meta_city(value: str) -> str | None:
    """Meta CT: a–z only, lower case, no spaces or punctuation (São Paulo → saopaulo)."""
    return _letters(value) or None


def meta_state(value: str, country: str | None) -> str | None:
    """Meta ST: the two-letter code, lower case, for US states; elsewhere a–z only, lower case."""
    letters = _letters(value)
    if country == "US":
        return _us_states().get(letters, letters) or None
    return letters or None


def meta_zip(value: str, country: str | None) -> str | None:
    """Meta ZIP: lower case without spaces; a US zip keeps its first five digits only."""
    compact = "".join(value.lower().split())
    if country == "US":
        compact = compact.split("-")[0][:5]
    return compact or None


def e164(phone: str, region: str | None) -> str | None:
    """The phone in E.164 (``+33612345678``), or None when it cannot be a phone number.

    A number without ``+`` is read in the lead's country (``06 12 34 56 78`` in FR, ``0033 6…``); one
    without a country cannot be placed and is dropped rather than guessed.
    """
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    # "Possible" (a plausible length for the country) rather than "valid" (a number range in use): twice as
    # fast, and a number that is possible but unassigned simply matches nobody on the platform.
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_expr(column: str) -> pl.Expr:
    """Trimmed, lower case; null unless it looks like ``user@domain`` (no inner spaces)."""
    text = pl.col(column).str.strip_chars().str.to_lowercase()
    return pl.when(text.str.contains(r"^[^@\s]+@[^@\s]+$")).then(text).otherwise(None)


def google_email_expr(column: str) -> pl.Expr:
    """Google's rule on top: for gmail.com and googlemail.com, no dots and no ``+suffix`` in the user part."""
    text = email_expr(column)
    user = text.str.extract(r"^([^@]+)@", 1)
    domain = text.str.extract(r"@(.+)$", 1)
    gmail_user = user.str.replace(r"\+.*$", "").str.replace_all(".", "", literal=True)
    is_gmail = domain.is_in(["gmail.com", "googlemail.com"])
    return (
        pl.when(is_gmail & (gmail_user.str.len_chars() > 0))
        .then(pl.concat_str([gmail_user, pl.lit("@"), domain]))
        .when(is_gmail)
        .then(None)
        .otherwise(text)
    )


def _trimmed(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.when(text.str.len_chars() > 0).then(text).otherwise(None)


def resolve_phones(leads: pl.DataFrame, default_country: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each lead's phone in E.164 (column ``e164``), and the ``(lead_key, phone, region, e164)`` parsed now.

    Parsing a phone costs ≈ 30 µs (``phonenumbers``): 100,000 leads would take seconds on every export.
    So the result is remembered per lead (``cached_phone``, ``cached_region``, ``cached_e164`` columns,
    when the caller read them): only a lead whose phone or country changed is parsed again, once per
    distinct (phone, region) pair. The second frame is what the caller should remember.
    """
    frame = _with_country(leads, default_country).rename({"_country": "region"})
    if all(column in frame.columns for column in PHONE_CACHE):
        hit = (pl.col("phone") == pl.col("cached_phone")) & pl.col("region").eq_missing(pl.col("cached_region"))
        hit = hit.fill_null(False)
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("cached_e164"))
        hit = pl.lit(False)
    frame = frame.with_columns(hit.alias("_hit"))
    todo = frame.filter(~pl.col("_hit") & pl.col("phone").is_not_null()).select("lead_key", "phone", "region")
    pairs = todo.select("phone", "region").unique()
    parsed = [e164(phone, region) for phone, region in pairs.iter_rows()]
    pairs = pairs.with_columns(pl.Series("e164", parsed, dtype=pl.Utf8))
    fresh = todo.join(pairs, on=["phone", "region"], how="left", nulls_equal=True)
    fresh_e164 = fresh.select("lead_key", pl.col("e164").alias("_fresh"))
    resolved = frame.join(fresh_e164, on="lead_key", how="left", maintain_order="left")
    e164_column = pl.when(pl.col("_hit")).then(pl.col("cached_e164")).otherwise(pl.col("_fresh"))
    return leads.with_columns(resolved.select(e164_column.alias("e164")).to_series()), fresh


def _with_country(leads: pl.DataFrame, default_country: str | None) -> pl.DataFrame:
    countries = map_distinct(leads["country"], country_code)
    return leads.with_columns(countries.fill_null(pl.lit(default_country, dtype=pl.Utf8)).alias("_country"))


def _hash(series: pl.Series) -> pl.Series:
    return map_distinct(series, sha256_hex)


# ── platform rows ───────────────────────────────────────────────────────────────────────────


def platform_rows(leads: pl.DataFrame, platform: Platform, default_country: str | None = None) -> pl.DataFrame:
    """One row per matchable lead: ``lead_key`` and the platform's columns, normalised and hashed.

    ``leads`` has the ``LEAD_SCHEMA`` columns. A lead with nothing the platform can match on (no email,
    no valid phone, no full name) is left out: it would only inflate the file.
    """
    if "e164" not in leads.columns:
        if platform not in PHONE_PLATFORMS:
            leads = leads.with_columns(pl.lit(None, dtype=pl.Utf8).alias("e164"))
        else:
            leads = resolve_phones(leads, default_country)[0]
    leads = _with_country(leads.select(*LEAD_SCHEMA, "e164"), default_country)
    country = leads["_country"]
    if platform == "meta":
        phone = leads["e164"].str.strip_chars_start("+")
        fn, ln = map_distinct(leads["first_name"], meta_name), map_distinct(leads["last_name"], meta_name)
        pairs = pl.DataFrame({"state": leads["state"], "zip": leads["zip"], "c": country})
        state = _map_pairs(pairs, "state", meta_state)
        zips = _map_pairs(pairs, "zip", meta_zip)
        email = leads.select(email_expr("email")).to_series()
        rows = pl.DataFrame(
            {
                "lead_key": leads["lead_key"],
                "EMAIL": _hash(email),
                "PHONE": _hash(phone),
                "FN": _hash(fn),
                "LN": _hash(ln),
                "CT": _hash(map_distinct(leads["city"], meta_city)),
                "ST": _hash(state),
                "ZIP": _hash(zips),
                "COUNTRY": _hash(country.str.to_lowercase()),
                "EXTERN_ID": leads["lead_id"],
            }
        )
        matchable = pl.col("EMAIL").is_not_null() | pl.col("PHONE").is_not_null() | _both("FN", "LN")
    elif platform == "google":
        names = leads.select(
            email=google_email_expr("email"),
            first=_trimmed("first_name").str.to_lowercase(),
            last=_trimmed("last_name").str.to_lowercase(),
            zip=_trimmed("zip"),
        )
        rows = pl.DataFrame(
            {
                "lead_key": leads["lead_key"],
                "Email": _hash(names["email"]),
                "Phone": _hash(leads["e164"]),
                "First Name": _hash(names["first"]),
                "Last Name": _hash(names["last"]),
                "Country": country,
                "Zip": names["zip"],
            }
        )
        address = _both("First Name", "Last Name") & pl.col("Country").is_not_null() & pl.col("Zip").is_not_null()
        matchable = pl.col("Email").is_not_null() | pl.col("Phone").is_not_null() | address
    elif platform == "linkedin":
        plain = leads.select(
            email=email_expr("email"),
            firstname=_trimmed("first_name").str.slice(0, LINKEDIN_LIMITS["firstname"]),
            lastname=_trimmed("last_name").str.slice(0, LINKEDIN_LIMITS["lastname"]),
            jobtitle=_trimmed("job_title").str.slice(0, LINKEDIN_LIMITS["jobtitle"]),
            employeecompany=_trimmed("company").str.slice(0, LINKEDIN_LIMITS["employeecompany"]),
        )
        rows = pl.DataFrame(
            {
                "lead_key": leads["lead_key"],
                "email": _hash(plain["email"]),
                "firstname": plain["firstname"],
                "lastname": plain["lastname"],
                "jobtitle": plain["jobtitle"],
                "employeecompany": plain["employeecompany"],
                "country": country,
                "googleaid": pl.Series([None] * leads.height, dtype=pl.Utf8),
            }
        )
        matchable = pl.col("email").is_not_null() | _both("firstname", "lastname")
    else:
        raise ValueError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    return rows.filter(matchable).sort("lead_key")


def _both(a: str, b: str) -> pl.Expr:
    return pl.col(a).is_not_null() & pl.col(b).is_not_null()


def _map_pairs(pairs: pl.DataFrame, column: str, function: Callable[[str, str | None], str | None]) -> pl.Series:
    """``function(value, country)`` once per distinct pair (US states and zips follow US rules)."""
    distinct = pairs.select(column, "c").filter(pl.col(column).is_not_null()).unique()
    mapped = [function(value, country) for value, country in distinct.iter_rows()]
    distinct = distinct.with_columns(pl.Series("_out", mapped, dtype=pl.Utf8))
    return pairs.select(column, "c").join(distinct, on=[column, "c"], how="left", nulls_equal=True)["_out"]


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
