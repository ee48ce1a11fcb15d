"""Deterministic synthetic demo data: leads, an event log, and the true outcomes behind them.

Why synthetic data with a known truth: the demo, the tests and the backtests need leads whose
conversion really depends on who they are and what they did, so that a points model can be judged.
Each (lead, product line) gets a latent propensity from fit (seniority, company size, industry,
budget, student, competitor) and behaviour (pricing visits, demos, trials, meetings, webinars,
replies, recency) through a logistic function; ``converted`` is drawn from it, in the 90 days after
``as_of`` so that nothing in the log leaks the outcome.

Everything is vectorised (NumPy + Polars), seeded and byte-for-byte reproducible.

    python -m examples.generate --leads 200000 --events 5000000 --out demo-data --seed 0
"""

import argparse
import math
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from examples import vocabulary
from examples.vocabulary import LINES

DAY_US = 86_400_000_000
SECOND_US = 1_000_000
LEAD_COLUMNS = (
    "lead_id", "email", "first_name", "last_name", "phone", "company", "city", "state", "zip", "country",
    "owner_email", "email_opt_in", "ads_opt_in", "job_title", "industry", "company_size", "budget", "occupation",
    "is_competitor", "product_interest",
)  # fmt: skip
EVENT_COLUMNS = ("event_id", "lead_id", "type", "occurred_at", "product_line", "properties")
INTERESTS = (*LINES, ";".join(LINES))  # the third choice: interested in both lines

# The truth the generator knows (the demo models are a marketer's guess at it).
SIZE_FIT = {"crm-suite": (50, 2000), "analytics-cloud": (200, 10_000)}
INDUSTRY_FIT = {
    "crm-suite": {
        "Software",
        "Financial Services",
        "Retail",
        "E-commerce",
        "Professional Services",
        "Telecommunications",
    },
    "analytics-cloud": {"Manufacturing", "Healthcare", "Logistics", "Energy", "Retail", "Financial Services"},
}

# Event-type mixes: "browse" for curiosity, "buying" for a lead acting on intent. Email traffic is separate.
BROWSE_MIX = {
    "page_view": 0.862, "asset_download": 0.05, "form_submit": 0.03, "webinar_register": 0.03,
    "webinar_attend": 0.015, "chat_started": 0.005,
}  # fmt: skip
BUYING_MIX = {
    "page_view": 0.60, "demo_request": 0.07, "trial_start": 0.06, "meeting_booked": 0.06, "form_submit": 0.07,
    "webinar_attend": 0.04, "asset_download": 0.04, "chat_started": 0.03,
}  # fmt: skip
EMAIL_SHARE = 0.33  # of all events: sends, deliveries, opens, clicks, replies, unsubscribes
ADJUSTMENT_SHARE = 0.001  # of web/sales events: manual point adjustments by sales
TAG_SHARE = 0.5  # of the events not tagged by nature (~60 % tagged overall)

# Page-view URL categories: (pool, browse weight, buying weight)
PRICING_PAGES = ("/pricing", "/pricing#enterprise", "/pricing/compare")
PRODUCT_PAGES = tuple(f"/product/{line}/{feature}" for line in LINES for feature in vocabulary.FEATURES[line])
URL_CATEGORIES = (
    (vocabulary.BROWSE_PAGES, 0.24, 0.02),
    (vocabulary.BLOG, 0.40, 0.05),
    (PRODUCT_PAGES, 0.26, 0.38),
    (PRICING_PAGES, 0.05, 0.42),
    (vocabulary.STORIES, 0.04, 0.08),
    (("/security",), 0.01, 0.05),
)

# Vocabularies that events are coded against (see the events section).
TYPES = (
    "page_view", "asset_download", "form_submit", "webinar_register", "webinar_attend", "chat_started",
    "demo_request", "trial_start", "meeting_booked", "manual_adjustment", "email_sent", "email_delivered",
    "email_bounce", "email_open", "email_click", "email_reply", "unsubscribe",
)  # fmt: skip
CODE = {name: code for code, name in enumerate(TYPES)}
URLS = (*(u for pool, _, _ in URL_CATEGORIES for u in pool), *(f"/product/{line}" for line in LINES), "/demo", "/trial")
URL_STARTS = np.cumsum([0] + [len(pool) for pool, _, _ in URL_CATEGORIES])[:-1]
PRICING_URLS = [URLS.index(u) for u in PRICING_PAGES]
ASSETS = tuple(a for line in LINES for a in vocabulary.ASSETS[line])  # six per line
ASSET_WEIGHTS = [0.2, 0.18, 0.2, 0.14, 0.16, 0.12]
WEBINARS = tuple(w for line in LINES for w in vocabulary.WEBINARS[line])  # three per line
FORMS = (*vocabulary.BROWSE_FORMS, *vocabulary.BUYING_FORMS, "calendar-booking")
CAMPAIGNS = (*vocabulary.AD_CAMPAIGNS, *(c for line in LINES for c in vocabulary.CAMPAIGNS[line]))  # then five per line
AGENTS = (*vocabulary.HUMAN_AGENTS, *vocabulary.MACHINE_AGENTS, vocabulary.PREFETCH_AGENT, *vocabulary.SCANNER_AGENTS)
LOG_SCHEMA = {
    "_lead": pl.Int64, "_ts": pl.Int64, "_type": pl.Int8, "_line": pl.Int8, "_tagged": pl.Boolean,
    "_url": pl.Int32, "_asset": pl.Int32, "_form": pl.Int32, "_webinar": pl.Int32, "_campaign": pl.Int32,
    "_duration": pl.Int32, "_message": pl.Int64, "_agent": pl.Int32, "_adjustment": pl.Int32,
}  # fmt: skip


@dataclass(frozen=True)
class GeneratedData:
    """Where the files went and how many data rows each holds (invalid rows included)."""

    leads: Path
    events: Path
    outcomes: Path
    lead_rows: int
    event_rows: int
    outcome_rows: int
    as_of: datetime


def generate(
    out_dir: Path,
    *,
    leads: int,
    events: int,
    seed: int = 0,
    as_of: datetime,
    days: int = 365,
    bad_rows: int = 0,
) -> GeneratedData:
    """Write ``leads.csv``, ``events.csv`` and ``outcomes.csv`` into ``out_dir``.

    Exactly ``leads`` valid leads and ``events`` valid events dated within ``days`` before ``as_of``,
    then ``bad_rows`` invalid rows appended to each of the leads and events files so that ingestion's
    rejects can be exercised. Same arguments, same bytes.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    if leads < 1 or events < 0 or bad_rows < 0 or days <= 0:
        raise ValueError("need leads >= 1, events >= 0, bad_rows >= 0 and days > 0")
    rng = np.random.default_rng(seed)
    as_of_us = _micros(as_of)
    people = _leads(rng, leads, days)
    log = _events(rng, people, events, as_of_us, days)
    outcomes = _outcomes(rng, people, log, as_of_us, days)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "leads.csv", out_dir / "events.csv", out_dir / "outcomes.csv")
    lead_rows = _lead_table(people, bad_rows)
    event_rows = _event_table(log, people, bad_rows, as_of)
    lead_rows.write_csv(paths[0])
    event_rows.write_csv(paths[1])
    outcomes.write_csv(paths[2])
    return GeneratedData(*paths, lead_rows.height, event_rows.height, outcomes.height, as_of)


# --- leads ---------------------------------------------------------------------------------------


def _leads(rng: np.random.Generator, n: int, days: int) -> pl.DataFrame:
    """Public lead attributes plus hidden truth columns (prefixed ``_``) that drive behaviour."""
    codes = list(vocabulary.COUNTRIES)
    weights = np.array([c.weight for c in vocabulary.COUNTRIES.values()])
    country = rng.choice(len(codes), size=n, p=weights / weights.sum())
    student = rng.random(n) < 0.03
    competitor = ~student & (rng.random(n) < 0.025)

    cols: dict[str, np.ndarray] = {
        k: np.full(n, None, dtype=object)
        for k in ("first", "last", "first_ascii", "last_ascii", "phone_fmt", "city", "state", "zip_fmt", "legal")
    }
    cols["tld"] = np.full(n, None, dtype=object)
    cols["personal"] = np.full(n, None, dtype=object)
    for i, code in enumerate(codes):
        spec, mask = vocabulary.COUNTRIES[code], country == i
        k = int(mask.sum())
        if not k:
            continue
        for key, pool in (("first", spec.first_names), ("last", spec.last_names)):
            idx = rng.integers(0, len(pool), k)
            cols[key][mask] = np.array(pool, dtype=object)[idx]
            cols[f"{key}_ascii"][mask] = np.array([_ascii(p) for p in pool], dtype=object)[idx]
        city = rng.integers(0, len(spec.cities), k)
        for j, key in enumerate(("city", "state", "zip_fmt")):
            cols[key][mask] = np.array([c[j] for c in spec.cities], dtype=object)[city]
        cols["phone_fmt"][mask] = np.array(spec.phones, dtype=object)[rng.integers(0, len(spec.phones), k)]
        cols["legal"][mask] = np.array(spec.legal, dtype=object)[rng.integers(0, len(spec.legal), k)]
        cols["tld"][mask] = spec.tld
        cols["personal"][mask] = np.array(spec.personal_domains, dtype=object)[
            rng.integers(0, len(spec.personal_domains), k)
        ]

    # Companies: a heavy-tailed share of leads per company; size and industry belong to the company.
    n_companies = max(20, n // 4)
    company = np.minimum((rng.pareto(1.2, n) * n_companies / 40).astype(np.int64), n_companies - 1)
    industries = list(vocabulary.INDUSTRIES)
    ind_w = np.array([w for w, _ in vocabulary.INDUSTRIES.values()])
    comp_industry = rng.choice(len(industries), size=n_companies, p=ind_w / ind_w.sum())
    comp_size = np.clip(np.round(rng.lognormal(math.log(70), 1.7, n_companies)), 1, 250_000).astype(np.int64)
    comp_root = rng.integers(0, len(vocabulary.COMPANY_ROOTS), n_companies)
    comp_word = rng.integers(0, 4, n_companies)
    industry = comp_industry[company]
    words = np.array([w[j % len(w)] for _, w in vocabulary.INDUSTRIES.values() for j in range(4)], dtype=object)
    company_word = words[industry * 4 + comp_word[company]]
    root = np.array(vocabulary.COMPANY_ROOTS, dtype=object)[comp_root[company]]
    size = comp_size[company].astype(np.float64)
    budget = np.round(5000 * size**0.45 * rng.lognormal(0, 0.7, n) / 500) * 500

    titles = vocabulary.TITLES
    t_w = np.array([t[1] for t in titles])
    title_idx = rng.choice(len(titles), size=n, p=t_w / t_w.sum())
    senior = np.array([t[2] for t in titles])[title_idx] & ~student
    function = np.array([t[3] for t in titles], dtype=object)[title_idx]
    job_title = np.array([t[0] for t in titles], dtype=object)[title_idx]
    job_title[student] = np.array(vocabulary.STUDENT_TITLES, dtype=object)[
        rng.integers(0, len(vocabulary.STUDENT_TITLES), int(student.sum()))
    ]

    # Product interest follows the job: sales people want the CRM, data people the analytics.
    interest_p = {"sales": [0.6, 0.2, 0.2], "data": [0.15, 0.65, 0.2], "other": [0.45, 0.35, 0.2]}
    u = rng.random(n)
    interest = np.zeros(n, dtype=np.int64)
    for fn, (p_crm, p_ac, _) in interest_p.items():
        mask = function == fn
        interest[mask] = np.where(u[mask] < p_crm, 0, np.where(u[mask] < p_crm + p_ac, 1, 2))

    flagged = competitor & (rng.random(n) < 0.6)
    competitor_company = rng.integers(0, len(vocabulary.COMPETITORS), n)
    frame = pl.DataFrame(
        {
            "_i": np.arange(n),
            "_country": np.array(codes, dtype=object)[country],
            "first_name": cols["first"],
            "last_name": cols["last"],
            "_first_ascii": cols["first_ascii"],
            "_last_ascii": cols["last_ascii"],
            "_phone_fmt": cols["phone_fmt"],
            "city": cols["city"],
            "state": cols["state"],
            "_zip_fmt": cols["zip_fmt"],
            "_legal": cols["legal"],
            "_tld": cols["tld"],
            "_personal": cols["personal"],
            "_root": root,
            "_word": company_word,
            "_industry": np.array(industries, dtype=object)[industry],
            "_size": size,
            "_budget": budget,
            "job_title": job_title,
            "_senior": senior,
            "_student": student,
            "_competitor": competitor,
            "_flagged": flagged,
            "_competitor_name": np.array([c[0] for c in vocabulary.COMPETITORS], dtype=object)[competitor_company],
            "_competitor_domain": np.array([c[1] for c in vocabulary.COMPETITORS], dtype=object)[competitor_company],
            "_interest": interest,
            "_digits": rng.integers(0, 10, (n, 12)).astype(np.uint8),
            "_u": rng.random((n, 13)),
            "_owner": rng.integers(0, len(vocabulary.OWNERS), n),
        },
        schema_overrides={"_digits": pl.Array(pl.UInt8, 12), "_u": pl.Array(pl.Float64, 13)},
        strict=False,
    )
    frame = _public_attributes(frame)
    return _latent(rng, frame, days)


def _public_attributes(f: pl.DataFrame) -> pl.DataFrame:
    """Derive what a CRM export would show, with its gaps, case noise and mixed formats."""
    u = [pl.col("_u").arr.get(i) for i in range(13)]
    digit = [pl.col("_digits").arr.get(i).cast(pl.Utf8) for i in range(12)]
    phone = pl.col("_phone_fmt")
    zip_code = pl.col("_zip_fmt")
    for d in digit:
        phone = phone.str.replace("#", d, literal=True, n=1)
        zip_code = zip_code.str.replace("#", d, literal=True, n=1)
    for i in (10, 11):  # North American area and exchange codes start with 2-9
        phone = phone.str.replace("N", (pl.col("_digits").arr.get(i) % 8 + 2).cast(pl.Utf8), literal=True, n=1)
    slug = pl.concat_str(pl.col("_root"), pl.col("_word")).map_batches(_ascii_series).str.to_lowercase()
    company_domain = pl.concat_str(slug.str.replace_all(r"[^a-z0-9]", ""), pl.col("_tld"))
    domain = (
        pl.when(pl.col("_competitor") & (~pl.col("_flagged") | (u[0] < 0.5)))
        .then(pl.col("_competitor_domain"))
        .when(pl.col("_student") | (u[1] < 0.2))
        .then(pl.col("_personal"))
        .otherwise(company_domain)
    )
    first, last = pl.col("_first_ascii").str.replace_all(" ", ""), pl.col("_last_ascii").str.replace_all(" ", "")
    local = (
        pl.when(u[2] < 0.45)
        .then(pl.concat_str(first, pl.lit("."), last))
        .when(u[2] < 0.65)
        .then(pl.concat_str(first.str.slice(0, 1), pl.lit("."), last))
        .when(u[2] < 0.8)
        .then(pl.concat_str(first, last))
        .when(u[2] < 0.9)
        .then(pl.concat_str(first, pl.lit("_"), last))
        .otherwise(pl.concat_str(first, last.str.slice(0, 1), pl.col("_digits").arr.get(0).cast(pl.Utf8), digit[1]))
    )
    email = pl.concat_str(local, pl.lit("@"), domain)
    email = (
        pl.when(u[3] < 0.75)
        .then(email.str.to_lowercase())
        .when(u[3] < 0.95)
        .then(email)  # "Jose.Garcia@helixhealth.es": as typed into a form
        .otherwise(email.str.to_uppercase())
    )
    company = (
        pl.when(pl.col("_student"))
        .then(None)
        .when(pl.col("_competitor"))
        .then(pl.col("_competitor_name"))
        .otherwise(pl.concat_str(pl.col("_root"), pl.col("_word"), pl.col("_legal"), separator=" "))
    )
    title = pl.col("job_title")
    title = (
        pl.when(u[4] < 0.05)
        .then(None)
        .when(u[4] < 0.07)
        .then(title.str.to_uppercase())
        .when(u[4] < 0.09)
        .then(title.str.to_lowercase())
        .otherwise(title)
    )
    occupation = (
        pl.when(pl.col("_student"))
        .then(pl.when(u[5] < 0.3).then(pl.lit("Student")).otherwise(pl.lit("student")))
        .when(u[5] < 0.85)
        .then(pl.lit("employed"))
        .when(u[5] < 0.95)
        .then(pl.lit("self-employed"))
        .otherwise(None)
    )
    known_size = ~pl.col("_student") & (u[6] >= 0.08)
    return f.with_columns(
        lead_id=pl.concat_str(pl.lit("LD-"), (pl.col("_i") + 1).cast(pl.Utf8).str.zfill(7)),
        email=pl.when(u[7] < 0.02).then(None).otherwise(email),
        phone=pl.when(u[8] < 0.25).then(None).otherwise(phone),
        company=company,
        zip=zip_code,
        country=pl.when(u[9] < 0.02)
        .then(None)
        .when(u[9] < 0.04)
        .then(pl.col("_country").str.to_lowercase())
        .otherwise(pl.col("_country")),
        owner_email=pl.lit(pl.Series(vocabulary.OWNERS)).gather(pl.col("_owner")),
        email_opt_in=u[10] < 0.7,
        ads_opt_in=u[11] < 0.5,
        job_title=title,
        industry=pl.when(pl.col("_student") | (u[6] > 0.95)).then(None).otherwise(pl.col("_industry")),
        company_size=pl.when(known_size).then(pl.col("_size").cast(pl.Int64)),
        budget=pl.when(known_size & (u[12] < 0.6)).then(pl.col("_budget").cast(pl.Int64)),
        occupation=occupation,
        is_competitor=pl.col("_flagged"),
        product_interest=pl.lit(pl.Series(INTERESTS)).gather(pl.col("_interest")),
    )


def _latent(rng: np.random.Generator, f: pl.DataFrame, days: int) -> pl.DataFrame:
    """Hidden intent per product line (share of "buying" actions), activity rate and recency."""
    n = f.height
    noise = rng.normal(0, 1, (n, 2))
    q = np.zeros((n, 2))
    for j, line in enumerate(LINES):
        z = (
            -0.8
            + 1.0 * f["_senior"].to_numpy()
            + 0.6 * _size_fit(f["_size"].to_numpy(), line)
            + 0.5 * f["_industry"].is_in(list(INDUSTRY_FIT[line])).to_numpy()
            + 0.4 * (f["_budget"].to_numpy() >= 20_000)
            - 1.5 * f["_student"].to_numpy()
            + 1.0 * f["_competitor"].to_numpy()  # competitors study the pricing page closely
            + noise[:, j]
        )
        interested = (f["_interest"].to_numpy() == j) | (f["_interest"].to_numpy() == 2)
        q[:, j] = np.where(interested, 0.03 + 0.37 / (1 + np.exp(-(z - 1.2))), 0.0)
    q_max = q.max(axis=1)
    activity = rng.lognormal(0, 1.25, n) * (0.5 + 4 * q_max) * np.where(f["_student"].to_numpy(), 1.3, 1.0)
    # Activity comes in bursts ("sessions" of a few days) around three moments per lead; the
    # keenest leads were active most recently.
    recency = days * rng.beta(0.9, 3.0, n) * np.clip(1 - 1.5 * q_max, 0.25, 1)
    span = rng.uniform(5, 90, n)
    sessions = recency[:, None] + span[:, None] * np.column_stack(
        [np.zeros(n), rng.uniform(0.2, 1, n), rng.uniform(1, 3, n)]
    )
    return f.with_columns(
        pl.Series("_q0", q[:, 0]),
        pl.Series("_q1", q[:, 1]),
        pl.Series("_activity", activity),
        pl.Series("_recency", recency),
        pl.Series("_sessions", _wrap(sessions, recency[:, None], days)),
    )


def _wrap(age: np.ndarray, recency: np.ndarray, days: int) -> np.ndarray:
    """Fold ages past the horizon back into ``[recency, days)``."""
    room = np.maximum(days - recency, 1e-3)
    return recency + np.mod(age - recency, room)


def _size_fit(size: np.ndarray, line: str) -> np.ndarray:
    lo, hi = SIZE_FIT[line]
    return (size >= lo) & (size <= hi)


# --- events --------------------------------------------------------------------------------------
# Events are built as integer codes into the vocabularies above (cheap to draw, sort and group)
# and turned into text only when written.


def _events(rng: np.random.Generator, people: pl.DataFrame, n: int, as_of_us: int, days: int) -> pl.DataFrame:
    """Exactly ``n`` events, time-ordered, as codes (see ``LOG_SCHEMA``)."""
    email = _email_sequences(rng, people, round(n * EMAIL_SHARE), as_of_us, days)
    singles = _single_events(rng, people, n - email.height, as_of_us, days)
    return pl.concat([singles, email]).sort("_ts", maintain_order=True)  # stable: ties keep their order


def _log(columns: dict[str, np.ndarray], k: int) -> pl.DataFrame:
    """An event frame with every ``LOG_SCHEMA`` column; a missing property is -1."""
    data = {name: columns.get(name, np.full(k, -1)) for name in LOG_SCHEMA}
    return pl.DataFrame(data, schema=LOG_SCHEMA, strict=False)


def _pick_line(rng: np.random.Generator, interest: np.ndarray) -> np.ndarray:
    return np.where(interest == 2, rng.integers(0, 2, interest.size), interest)


def _single_events(rng: np.random.Generator, people: pl.DataFrame, k: int, as_of_us: int, days: int) -> pl.DataFrame:
    """Web, content, webinar, sales and manual events; buying actions come from intent."""
    activity = people["_activity"].to_numpy()
    lead = rng.choice(people.height, size=k, p=activity / activity.sum()) if k else np.zeros(0, np.int64)
    adjusted = rng.random(k) < ADJUSTMENT_SHARE  # sales adjusts a few leads, busy or not
    lead[adjusted] = rng.integers(0, people.height, int(adjusted.sum()))
    line = _pick_line(rng, people["_interest"].to_numpy()[lead])
    q = np.where(line == 0, people["_q0"].to_numpy()[lead], people["_q1"].to_numpy()[lead])
    buying = rng.random(k) < q
    kind = np.where(buying, _draw(rng, BUYING_MIX, k), _draw(rng, BROWSE_MIX, k))
    student, competitor = people["_student"].to_numpy()[lead], people["_competitor"].to_numpy()[lead]
    late_funnel = np.isin(kind, _codes("demo_request", "trial_start", "meeting_booked", "form_submit"))
    kind[late_funnel & student] = CODE["asset_download"]
    kind[late_funnel & competitor] = CODE["page_view"]  # they read the pricing page, they never ask for a demo
    kind[(kind == CODE["trial_start"]) & (line == 0)] = CODE["demo_request"]  # the CRM has no free trial
    kind[adjusted] = CODE["manual_adjustment"]

    buying_cat = _draw_index(rng, [c[2] for c in URL_CATEGORIES], k)
    url_cat = np.where(buying | competitor, buying_cat, _draw_index(rng, [c[1] for c in URL_CATEGORIES], k))
    sizes = np.array([len(c[0]) for c in URL_CATEGORIES])
    offset = (rng.random(k) * sizes[url_cat]).astype(np.int64)
    product = (url_cat == 2) & (kind == CODE["page_view"])
    per_line = len(PRODUCT_PAGES) // len(LINES)
    offset[url_cat == 2] = line[url_cat == 2] * per_line + rng.integers(0, per_line, int((url_cat == 2).sum()))
    url = np.where(np.isin(kind, _codes("page_view", "chat_started")), URL_STARTS[url_cat] + offset, -1)
    url[kind == CODE["demo_request"]] = URLS.index("/demo")
    url[kind == CODE["trial_start"]] = URLS.index("/trial")

    forms = np.where(
        buying, _draw_index(rng, [0.45, 0.2, 0.2, 0.15], k) + len(vocabulary.BROWSE_FORMS), rng.integers(0, 3, k)
    )
    form = np.where(kind == CODE["form_submit"], forms, -1)
    form[kind == CODE["meeting_booked"]] = FORMS.index("calendar-booking")
    duration = np.clip(np.round(rng.lognormal(math.log(40), 1.0, k) * np.where(buying, 1.6, 1.0)), 1, 3600)
    ad_campaign = np.isin(kind, _codes("page_view", "form_submit")) & (rng.random(k) < 0.3)

    # Timestamps: most events fall in a lead's sessions (buying ones mostly in the latest), the
    # rest anywhere between its last activity and the horizon.
    recency = people["_recency"].to_numpy()[lead]
    sessions = people["_sessions"].to_numpy()[lead] if k else np.zeros((0, 3))
    session = np.where(buying, (rng.random(k) < 0.3).astype(np.int64), rng.integers(0, 3, k))
    in_session = (buying | (rng.random(k) < 0.7)) & ~adjusted
    burst = sessions[np.arange(k), session] + rng.exponential(1.5, k)
    spread = recency + rng.random(k) * (days - recency)
    age_days = _wrap(np.where(in_session, burst, spread), recency, days)
    ts = as_of_us - (age_days * DAY_US).astype(np.int64) - rng.integers(1, SECOND_US, k)

    always = _codes(
        "demo_request", "trial_start", "meeting_booked", "webinar_register", "webinar_attend", "manual_adjustment"
    )
    return _log(
        {
            "_lead": lead,
            "_ts": ts,
            "_type": kind,
            "_line": line,
            "_tagged": np.isin(kind, always) | product | (rng.random(k) < TAG_SHARE),
            "_url": url,
            "_asset": np.where(kind == CODE["asset_download"], line * 6 + _draw_index(rng, ASSET_WEIGHTS, k), -1),
            "_form": form,
            "_webinar": np.where(
                np.isin(kind, _codes("webinar_register", "webinar_attend")), line * 3 + rng.integers(0, 3, k), -1
            ),
            "_campaign": np.where(ad_campaign, rng.integers(0, len(vocabulary.AD_CAMPAIGNS), k), -1),
            "_duration": np.where(kind == CODE["page_view"], duration, -1),
            "_adjustment": np.where(adjusted, rng.integers(0, len(vocabulary.ADJUSTMENTS), k), -1),
        },
        k,
    )


def _email_sequences(
    rng: np.random.Generator, people: pl.DataFrame, target: int, as_of_us: int, days: int
) -> pl.DataFrame:
    """Campaign emails to opted-in leads: sent → delivered (or bounced) → opens, clicks, replies.

    Some opens are machines: a bare agent within a second of delivery (Apple Mail Privacy
    Protection) or an image proxy; some clicks are link scanners within a second of delivery.
    Whole sequences are kept, up to ``target`` rows.
    """
    eligible = np.flatnonzero(people["email"].is_not_null().to_numpy() & people["email_opt_in"].to_numpy())
    if target <= 0 or eligible.size == 0:
        return _log({}, 0)
    m = math.ceil(target / 2.4) + 8
    weight = 0.5 + np.sqrt(people["_activity"].to_numpy()[eligible])
    lead = eligible[rng.choice(eligible.size, size=m, p=weight / weight.sum())]
    line = _pick_line(rng, people["_interest"].to_numpy()[lead])
    q = np.where(line == 0, people["_q0"].to_numpy()[lead], people["_q1"].to_numpy()[lead])
    # Most campaigns go out on their own schedule; keen leads also get triggered follow-ups close
    # to their latest session, which is when replies happen.
    low = min(2.0, days / 2)
    near = rng.random(m) < np.minimum(0.8, 2 * q)
    session = people["_sessions"].to_numpy()[lead, 0]
    age = np.where(near, np.clip(session + rng.uniform(-2, 2, m), low, days * 0.999), rng.uniform(low, days, m))
    sent = as_of_us - (age * DAY_US).astype(np.int64)
    u = rng.random((m, 8))
    bounce = u[:, 0] < 0.02
    ok = ~bounce
    delivered = sent + rng.integers(1 * SECOND_US, 20 * SECOND_US, m)
    human_at = delivered + np.minimum(rng.exponential(6 * 3600, m), 36 * 3600).astype(np.int64) * SECOND_US
    human = ok & (u[:, 3] < 0.25 + 0.6 * q)
    within_a_second = delivered + rng.integers(50_000, 950_000, m)
    proxy_at = delivered + rng.integers(2, 3600, m) * SECOND_US
    scanned_at = delivered + rng.integers(100_000, 900_000, m)
    click_at = human_at + rng.integers(5, 900, m) * SECOND_US
    reply_at = human_at + rng.integers(60, 8 * 3600, m) * SECOND_US
    unsubscribe_at = human_at + rng.integers(10, 600, m) * SECOND_US
    latest = np.full(people.height, np.iinfo(np.int64).min)
    np.maximum.at(latest, lead, sent)
    last_email = sent == latest[lead]  # nobody is mailed after unsubscribing
    steps = [  # (type, who, when, user agents)
        ("email_sent", np.ones(m, bool), sent, ()),
        ("email_bounce", bounce, delivered, ()),
        ("email_delivered", ok, delivered, ()),
        ("email_open", ok & (u[:, 1] < 0.15), within_a_second, (vocabulary.PREFETCH_AGENT,)),
        ("email_open", ok & (u[:, 2] < 0.07), proxy_at, vocabulary.MACHINE_AGENTS),
        ("email_open", human, human_at, vocabulary.HUMAN_AGENTS),
        ("email_click", ok & (u[:, 4] < 0.03), scanned_at, vocabulary.SCANNER_AGENTS),
        ("email_click", human & (u[:, 5] < 0.25 + 0.5 * q), click_at, vocabulary.HUMAN_AGENTS),
        ("email_reply", human & (u[:, 6] < 0.01 + 0.3 * q), reply_at, ()),
        ("unsubscribe", human & last_email & (u[:, 7] < 0.05), unsubscribe_at, ()),
    ]
    seqs, kinds, times, agents = [], [], [], []
    for kind, who, when, pool in steps:
        seq = np.flatnonzero(who)
        seqs.append(seq)
        kinds.append(np.full(seq.size, CODE[kind]))
        times.append(when[seq])
        first = AGENTS.index(pool[0]) if pool else -1
        agents.append(first + rng.integers(0, len(pool), seq.size) if pool else np.full(seq.size, -1))
    seq, kind = np.concatenate(seqs), np.concatenate(kinds)
    keep = int(np.searchsorted(np.cumsum(np.bincount(seq, minlength=m)), target, side="right"))
    rows = seq < keep

    campaign = len(vocabulary.AD_CAMPAIGNS) + line * 5 + rng.integers(0, 5, m)
    landing = np.where(rng.random(m) < 0.25, URLS.index("/pricing"), URLS.index(f"/product/{LINES[0]}") + line)
    tagged = rng.random(m) < 0.6
    seq, kind = seq[rows], kind[rows]
    return _log(
        {
            "_lead": lead[seq],
            "_ts": np.concatenate(times)[rows],
            "_type": kind,
            "_line": line[seq],
            "_tagged": tagged[seq],
            "_url": np.where(kind == CODE["email_click"], landing[seq], -1),
            "_campaign": campaign[seq],
            "_message": seq,
            "_agent": np.concatenate(agents)[rows],
        },
        int(rows.sum()),
    )


def _codes(*names: str) -> list[int]:
    return [CODE[name] for name in names]


def _draw(rng: np.random.Generator, mix: dict[str, float], k: int) -> np.ndarray:
    return np.array(_codes(*mix), dtype=np.int64)[_draw_index(rng, list(mix.values()), k)]


def _draw_index(rng: np.random.Generator, weights: list[float], k: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(w.size, size=k, p=w / w.sum())


# --- outcomes ------------------------------------------------------------------------------------


def _outcomes(
    rng: np.random.Generator, people: pl.DataFrame, log: pl.DataFrame, as_of_us: int, days: int
) -> pl.DataFrame:
    """One row per (lead, product line of interest): the true propensity and a draw from it."""
    pairs = people.select(
        "_i", "lead_id", "_interest", "_senior", "_student", "_competitor", "_industry", "_size", "_budget"
    ).with_columns(
        _line=pl.when(pl.col("_interest") == 2).then(pl.lit([0, 1])).otherwise(pl.concat_list(pl.col("_interest")))
    )
    pairs = pairs.explode("_line").with_columns(pl.col("_line").cast(pl.Int64))
    t = pl.col("_type")
    activity = ~t.is_in(_codes("email_sent", "email_delivered", "email_bounce", "email_open"))
    features = None
    if log.height:
        features = (
            log.with_columns(pl.col("_line").cast(pl.Int64))
            .group_by("_lead", "_line")
            .agg(
                pricing=((t == CODE["page_view"]) & pl.col("_url").is_in(PRICING_URLS)).sum(),
                views=(t == CODE["page_view"]).sum(),
                demo=(t == CODE["demo_request"]).any(),
                trial=(t == CODE["trial_start"]).any(),
                meeting=(t == CODE["meeting_booked"]).any(),
                webinar=(t == CODE["webinar_attend"]).any(),
                reply=(t == CODE["email_reply"]).any(),
                unsub=(t == CODE["unsubscribe"]).any(),
                last=pl.col("_ts").filter(activity).max(),
            )
            .rename({"_lead": "_i"})
        )
    if features is not None:
        pairs = pairs.join(features, on=["_i", "_line"], how="left", maintain_order="left")
    else:
        pairs = pairs.with_columns(
            pl.lit(0).alias(c) for c in ("pricing", "views", "demo", "trial", "meeting", "webinar", "reply", "unsub")
        ).with_columns(last=pl.lit(None, pl.Int64))
    size, line = pl.col("_size"), pl.col("_line")
    size_fit = (
        pl.when(line == 0).then(size.is_between(*SIZE_FIT[LINES[0]])).otherwise(size.is_between(*SIZE_FIT[LINES[1]]))
    )
    size_fit = size_fit.fill_null(False)
    industry_fit = (
        pl.when(line == 0)
        .then(pl.col("_industry").is_in(list(INDUSTRY_FIT[LINES[0]])))
        .otherwise(pl.col("_industry").is_in(list(INDUSTRY_FIT[LINES[1]])))
        .fill_null(False)
    )

    def flag(name: str) -> pl.Expr:
        return pl.col(name).fill_null(False).cast(pl.Float64)

    recency = ((as_of_us - pl.col("last")) / DAY_US).fill_null(days)
    z = (
        -4.7
        + 1.1 * flag("_senior")
        + 0.5 * size_fit.cast(pl.Float64)
        + 0.5 * industry_fit.cast(pl.Float64)
        + 0.4 * (pl.col("_budget") >= 20_000).fill_null(False).cast(pl.Float64)
        + 0.5 * pl.col("pricing").fill_null(0).log1p()
        + 0.25 * pl.col("views").fill_null(0).log1p()
        + 1.4 * flag("demo")
        + 1.1 * flag("trial")
        + 1.0 * flag("meeting")
        + 0.6 * flag("webinar")
        + 0.8 * flag("reply")
        - 1.2 * flag("unsub")
        - recency / 120
        - 4.0 * flag("_student")
        - 5.0 * flag("_competitor")
    )
    pairs = pairs.with_columns(propensity=(1 / (1 + (-z).exp())).round(6))
    draws = rng.random(pairs.height)
    later = as_of_us + (rng.uniform(1, 90, pairs.height) * DAY_US).astype(np.int64)
    converted = draws < pairs["propensity"].to_numpy()
    return pairs.select(
        "lead_id",
        product_line=pl.lit(pl.Series(LINES)).gather(line),
        converted=pl.lit(pl.Series(converted.astype(np.int8))),
        propensity=pl.col("propensity"),
        converted_at=pl.when(pl.lit(pl.Series(converted))).then(_iso(pl.Series(later), millis=False)),
    )


# --- writing -------------------------------------------------------------------------------------


def _lead_table(people: pl.DataFrame, bad_rows: int) -> pl.DataFrame:
    """The public columns as text, then ``bad_rows`` invalid copies of the first lead."""
    table = people.select(pl.col(c).cast(pl.Utf8) for c in LEAD_COLUMNS)
    if not bad_rows:
        return table
    good = table.row(0, named=True)
    bad = []
    for i in range(bad_rows):
        row = dict(good)
        if i % 2 == 0:
            row["lead_id"] = None
        else:
            row["lead_id"] = f"LD-BAD-{i:04d}"
            row["email"] = ("jose.garcia@@example..com", "not-an-email", "zoë@")[i // 2 % 3]
        bad.append(row)
    return pl.concat([table, pl.DataFrame(bad, schema=dict.fromkeys(LEAD_COLUMNS, pl.Utf8))])


def _event_table(log: pl.DataFrame, people: pl.DataFrame, bad_rows: int, as_of: datetime) -> pl.DataFrame:
    """Codes to text, then ``bad_rows`` invalid events (missing id, naive time, unknown type, no lead)."""
    if not log.height:
        table = pl.DataFrame(schema=dict.fromkeys(EVENT_COLUMNS, pl.Utf8))
    else:
        table = log.select(
            pl.format("evt-{}", pl.int_range(1, pl.len() + 1)).alias("event_id"),
            _pick("_lead", people["lead_id"]).alias("lead_id"),
            _pick("_type", TYPES).alias("type"),
            _iso(pl.col("_ts")).alias("occurred_at"),
            pl.when(pl.col("_tagged")).then(_pick("_line", LINES)).alias("product_line"),
            _properties(people).alias("properties"),
        )
    if not bad_rows:
        return table
    lead_id = people["lead_id"][0]
    when = (as_of.astimezone(UTC) - timedelta(days=1)).replace(tzinfo=None)
    good = {"lead_id": lead_id, "type": "page_view", "occurred_at": _iso_text(when) + "Z", "properties": '{"url":"/"}'}
    bad = []
    for i in range(bad_rows):
        row = {**good, "event_id": f"evt-bad-{i:04d}", "product_line": None}
        match i % 4:
            case 0:
                row["event_id"] = None
            case 1:
                row["occurred_at"] = _iso_text(when)  # naive: no offset
            case 2:
                row["type"] = "page_veiw"
            case _:
                row["lead_id"] = None
        bad.append(row)
    return pl.concat([table, pl.DataFrame(bad, schema=dict.fromkeys(EVENT_COLUMNS, pl.Utf8))])


def _properties(people: pl.DataFrame) -> pl.Expr:
    """The JSON object of an event's properties, from pre-rendered ``"key":"value"`` fragments.

    The vocabularies hold no quotes or backslashes, so nothing needs escaping.
    """

    def fragment(column: str, key: str, values: tuple[str, ...] | list[str]) -> pl.Expr:
        return _pick(column, [f'"{key}":"{v}"' for v in values])

    message = pl.format(
        '"message_id":"<{}.{}@mail.acme-cloud.example>"', pl.col("_message"), _pick("_campaign", CAMPAIGNS)
    )
    adjustments = [f'"points":{points},"reason":"{reason}"' for points, reason in vocabulary.ADJUSTMENTS]
    owner = pl.lit(people["_owner"]).gather(pl.col("_lead"))
    author = pl.lit(pl.Series([f'"author":"{o}"' for o in vocabulary.OWNERS])).gather(owner)
    parts = [
        fragment("_url", "url", URLS),
        fragment("_asset", "asset", ASSETS),
        fragment("_form", "form", FORMS),
        fragment("_webinar", "webinar", WEBINARS),
        fragment("_campaign", "campaign", CAMPAIGNS),
        pl.when(pl.col("_duration") >= 0).then(pl.format('"duration_s":{}', pl.col("_duration"))),
        pl.when(pl.col("_message") >= 0).then(message),
        fragment("_agent", "user_agent", AGENTS),
        _pick("_adjustment", adjustments),
        pl.when(pl.col("_adjustment") >= 0).then(author),
    ]
    return pl.concat_str(pl.lit("{"), pl.concat_str(parts, separator=",", ignore_nulls=True), pl.lit("}"))


def _pick(column: str, values: tuple[str, ...] | list[str] | pl.Series) -> pl.Expr:
    """``values[column]`` per row, null where the code is -1 (or null)."""
    code = pl.col(column)
    return pl.when(code >= 0).then(pl.lit(pl.Series(values, dtype=pl.Utf8)).gather(code.clip(0)))


def _iso(micros: pl.Expr | pl.Series, *, millis: bool = True) -> pl.Expr:
    fmt = "%Y-%m-%dT%H:%M:%S%.3fZ" if millis else "%Y-%m-%dT%H:%M:%SZ"
    value = pl.lit(micros) if isinstance(micros, pl.Series) else micros
    return pl.from_epoch(value, time_unit="us").dt.strftime(fmt)


def _iso_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _micros(value: datetime) -> int:
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * SECOND_US + delta.microseconds


def _ascii(text: str) -> str:
    """ASCII for email local parts and domains: "Müller" → "Muller", "Weiß" → "Weiss", "D'Amico" → "DAmico"."""
    text = text.replace("ß", "ss").replace("Ł", "L").replace("ł", "l").replace("ø", "o").replace("'", "")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _ascii_series(s: pl.Series) -> pl.Series:
    uniques = s.unique()
    mapping = dict(zip(uniques.to_list(), [_ascii(v) if v is not None else None for v in uniques], strict=True))
    return s.replace_strict(mapping, return_dtype=pl.Utf8)


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--out", type=Path, default=Path("demo-data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", type=_parse_as_of, default=None, help="ISO-8601 with offset; default: today 00:00Z")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--bad-rows", type=int, default=0, help="invalid rows appended to leads and events")
    args = parser.parse_args(argv)
    as_of = args.as_of or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    data = generate(
        args.out,
        leads=args.leads,
        events=args.events,
        seed=args.seed,
        as_of=as_of,
        days=args.days,
        bad_rows=args.bad_rows,
    )
    elapsed = time.perf_counter() - started
    for path, rows in (
        (data.leads, data.lead_rows),
        (data.events, data.event_rows),
        (data.outcomes, data.outcome_rows),
    ):
        print(f"{path}: {rows:,} rows, {path.stat().st_size / 1e6:,.1f} MB")
    print(f"as_of {data.as_of.isoformat()}, seed {args.seed}: {elapsed:.1f} s")


def _parse_as_of(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or an offset")
    return value


if __name__ == "__main__":
    main()
