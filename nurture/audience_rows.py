"""Each platform's upload rows: the audience members' identifiers normalised and hashed by its rules.

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
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import cache

import phonenumbers
import polars as pl
import pycountry
from anyascii import anyascii

from nurture.audiences import PHONE_PLATFORMS, PLATFORMS, Platform
from store.shapes import AUDIENCE_LEAD_COLUMNS

# LinkedIn's template refuses longer values.
LINKEDIN_LIMITS = {"firstname": 35, "lastname": 35, "jobtitle": 50, "employeecompany": 50}

LEAD_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    **{name: pl.Utf8() for name in AUDIENCE_LEAD_COLUMNS},
    "job_title": pl.Utf8(),
}

# What an export remembers of each lead's parsed phone (see ``resolve_phones``).
PHONE_CACHE = ("cached_phone", "cached_region", "cached_e164")


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


# Distinct (phone, region) pairs from which ``e164_all`` parses in one process per core: starting them
# costs ≈ 1 s, parsing ≈ 22 µs a phone.
PARSE_PROCESSES_FROM = 100_000


def e164_all(
    pairs: Sequence[tuple[str, str | None]], processes: int | None = None, spread_from: int = PARSE_PROCESSES_FROM
) -> list[str | None]:
    """``e164`` of each ``(phone, region)``, in order. Parsing is pure Python: a first load of 1M leads
    holds ≈ 20 CPU s of it, so from ``spread_from`` pairs the work is split over ``processes`` (default:
    one per core), spawned rather than forked (a fork of a process running Polars' threads can deadlock)."""
    processes = processes or len(os.sched_getaffinity(0))
    if processes < 2 or len(pairs) < spread_from:
        return _e164_slice(pairs)
    size = -(-len(pairs) // (processes * 4))  # a few slices a process: none waits long for the last one
    slices = [pairs[start : start + size] for start in range(0, len(pairs), size)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [number for part in pool.map(_e164_slice, slices) for number in part]


def _e164_slice(pairs: Sequence[tuple[str, str | None]]) -> list[str | None]:
    return [e164(phone, region) for phone, region in pairs]


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
    parsed = e164_all(pairs.rows())
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
