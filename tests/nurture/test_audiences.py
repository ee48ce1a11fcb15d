"""Audience rows per platform on the platforms' own published example values, with exact hashes.

Expected hashes are SHA-256 hex digests of the normalised strings, computed outside this code
(``printf '%s' 448444124653 | sha256sum``). The Meta phone example ``+44 844 412 4653`` is from Meta's
customer-list guide; its normalised form ``448444124653`` and hash ``dc008fda…`` are the ones published
for the same rule (digits with country code, no ``+``). Google's values are from its Customer Match
CSV template (``test@gmail.com``, ``zoë``, ``pérez``, ``1-800-888-8888``, ``1(800)888-8888``,
``WC2H 8LG``).
"""

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from models.files import SpecError
from nurture.audience_rows import LEAD_SCHEMA, e164, e164_all, meta_name, platform_rows, resolve_phones
from nurture.audiences import csv_text, diff, load_audiences, with_lines
from stages.portfolio import load_portfolio

SHA = {
    "448444124653": "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383",
    "12345678910": "63640264849a87c90356129d99ea165e37aa5fabc1fea46906df1a7ca50db492",
    "33612345678": "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661",
    "+33612345678": "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8",
    "+18008888888": "f096eb92986ea543ab4ab565c4a1ad86d35dec42acb9b893e2d2c59444fbe33d",
    "+18008888899": "8c2c48bac33933198a0f874a67446c7bcbb5933ec329cd3d425487030ebfafad",
    "emilie": "8866a6cf193c843044c3591678350063d2cbc660e40559995cb9343bb15f36ae",
    "f": "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111",
    "smith": "6627835f988e2c5e50533d491163072d3f4f41f5c8b04630150debb3722ca2dd",
    "your.name@gmail.com": "1c26f08bba2c87e8db547da81c7071924be289ebcf3e56709343ba86cc7c24f8",
    "yourname@gmail.com": "6e4cfe4dbd8e147de72924bb1603b36430c7145f7f5e86ae8001a1b9a5985973",
    "test@gmail.com": "87924606b4131a8aceeeae8868531fbb9712aaa07a5d3a756b26ce0f5d6ca674",
    "johnsmith@googlemail.com": "b1dd4aa5ffe1507d6883708fdf4f7a88d176b107097b541c6975a70e2b8ffbb8",
    "zoë": "2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450",
    "pérez": "6654977d57dddd3c0329ca741b109ef6cd6430bedd00008aad213df25683d77f",
    "saopaulo": "8f7f2f7ccd3f2898cf4850905346e8fb333d00aac1c974f8f37326e068cf7b1e",
    "ca": "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126",
    "ny": "1b06e2003f8420d6fa42badd8f77ec0f706b976b7a48b13c567dc5a559681683",
    "94016": "ea49a862bf6e195fe92e0886ed8a89c6565137f3e90c0742d2a00952b307dd55",
    "gb": "0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677",
    "us": "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
    "fr": "67ad8f41a7bb0a18c45f3efd8f6a32bdcd832bcf8f3f2eb44006c03d53076e18",
}


def leads(*rows: dict[str, Any]) -> pl.DataFrame:
    """A lead frame; unspecified fields are null, keys 1, 2, … and ids LD-1, LD-2, …"""
    full = [
        {name: row.get(name) for name in LEAD_SCHEMA} | {"lead_key": i, "lead_id": row.get("lead_id", f"LD-{i}")}
        for i, row in enumerate(rows, start=1)
    ]
    return pl.DataFrame(full, schema=LEAD_SCHEMA)


def one(platform: str, default_country: str | None = None, **fields: Any) -> dict[str, Any]:
    rows = platform_rows(leads(fields), platform, default_country)  # type: ignore[arg-type]
    assert rows.height == 1, rows
    return rows.drop("lead_key").row(0, named=True)


# ── phones ──────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 844 412 4653", None, "+448444124653"),  # Meta's example, international form
        ("1-234-567-8910", "US", "+12345678910"),  # Meta's example, dashes, US trunk prefix 1
        ("1(800)888-8888", "US", "+18008888888"),  # Google's template
        ("1-800-888-8888", "US", "+18008888888"),  # Google's template
        ("18008888899", "US", "+18008888899"),  # Google's template, digits only
        ("06 12 34 56 78", "FR", "+33612345678"),  # national prefix 0, spaces
        ("06-12-34-56-78", "FR", "+33612345678"),
        ("0033 6 12 34 56 78", "FR", "+33612345678"),  # international dialling prefix 00
        ("+33 (0)6 12 34 56 78", None, "+33612345678"),  # the "(0)" written after the country code
        ("06 12 34 56 78", None, None),  # no country to read it in: dropped, not guessed
        ("555-12", "US", None),  # too short to be a number
        ("call me", "US", None),
    ],
)
def test_e164(raw: str, region: str | None, expected: str | None) -> None:
    assert e164(raw, region) == expected


# ── Meta ────────────────────────────────────────────────────────────────────────────────────


def test_meta_published_examples_exact_hashes() -> None:
    row = one(
        "meta",
        email="  Your.Name@Gmail.com ",
        phone="+44 844 412 4653",
        first_name="Émilie",
        last_name=" Smith ",
        city="São Paulo",
        state="California",
        zip="94016-1234",
        country="United States",
        lead_id="LD-42",
    )
    assert row == {
        "EMAIL": SHA["your.name@gmail.com"],  # Meta: trimmed, lower case; Gmail dots are kept
        "PHONE": SHA["448444124653"],  # digits with country code, no +
        "FN": SHA["emilie"],  # transliterated, a–z only
        "LN": SHA["smith"],
        "CT": SHA["saopaulo"],  # no spaces, no accents
        "ST": SHA["ca"],  # US state name → two-letter code
        "ZIP": SHA["94016"],  # US: first five digits
        "COUNTRY": SHA["us"],  # ISO alpha-2, lower case
        "EXTERN_ID": "LD-42",  # the advertiser's own id: not hashed
    }


def test_meta_names_initials_and_national_phone() -> None:
    row = one("meta", first_name="F.", last_name="SMITH", phone="06 12 34 56 78", state="NY", country="fr")
    assert row["FN"] == SHA["f"]
    assert row["LN"] == SHA["smith"]
    assert row["PHONE"] == SHA["33612345678"]
    assert row["COUNTRY"] == SHA["fr"]
    assert row["EMAIL"] is None and row["ZIP"] is None
    # Outside the US a state is only lower-cased letters, not mapped to a US code.
    assert row["ST"] == SHA["ny"]
    assert meta_name("Łódź-Żółć O'Brien") == "lodzzolcobrien"
    assert meta_name("...") is None


def test_meta_us_state_code_and_default_country() -> None:
    row = one("meta", first_name="Ann", last_name="Lee", state=" ny ", phone="1-234-567-8910", default_country="US")
    assert row["ST"] == SHA["ny"]
    assert row["PHONE"] == SHA["12345678910"]
    assert row["COUNTRY"] == SHA["us"]


# ── Google ──────────────────────────────────────────────────────────────────────────────────


def test_google_template_values_exact() -> None:
    row = one(
        "google",
        email=" Test@Gmail.com",
        first_name="Zoë ",
        last_name="Pérez",
        phone="1(800)888-8888",
        country="us",
        zip=" 94016 ",
    )
    assert row == {
        "Email": SHA["test@gmail.com"],
        "Phone": SHA["+18008888888"],  # E.164, with +
        "First Name": SHA["zoë"],  # Google keeps accents: lower case and trimmed only
        "Last Name": SHA["pérez"],
        "Country": "US",  # plain
        "Zip": "94016",  # plain
    }
    row = one(
        "google", first_name="Ann", last_name="Lee", phone="1-800-888-8888", zip="WC2H 8LG", country="United Kingdom"
    )
    assert row["Phone"] is None  # read in the lead's own country (GB), it is not a valid number
    assert (row["Country"], row["Zip"]) == ("GB", "WC2H 8LG")
    assert one("google", phone="18008888899", default_country="US")["Phone"] == SHA["+18008888899"]


@pytest.mark.parametrize(
    ("email", "normalised"),
    [
        ("Your.Name+ads@GMAIL.com", "yourname@gmail.com"),
        ("  john.smith+promo@googlemail.com ", "johnsmith@googlemail.com"),
        ("test@gmail.com", "test@gmail.com"),
    ],
)
def test_google_gmail_dots_and_plus(email: str, normalised: str) -> None:
    assert one("google", email=email)["Email"] == SHA[normalised]


def test_google_other_domains_keep_dots_and_plus() -> None:
    import hashlib

    row = one("google", email="First.Last+x@Example.com")
    assert row["Email"] == hashlib.sha256(b"first.last+x@example.com").hexdigest()


# ── LinkedIn ────────────────────────────────────────────────────────────────────────────────


def test_linkedin_hashed_email_plain_fields_and_csv_quoting() -> None:
    frame = leads(
        {
            "email": " Your.Name@Gmail.com",
            "first_name": "Émilie",
            "last_name": "Smith",
            "job_title": 'VP "Sales"',
            "company": "Acme, Inc.",
            "country": "France",
        },
        {"first_name": "X" * 40, "last_name": "Y", "country": "zz-unknown"},
    )
    rows = platform_rows(frame, "linkedin")
    text = csv_text("linkedin", with_lines(rows, "linkedin")["line"])
    assert text == (
        "email,firstname,lastname,jobtitle,employeecompany,country,googleaid\n"
        f'{SHA["your.name@gmail.com"]},Émilie,Smith,"VP ""Sales""","Acme, Inc.",FR,\n'
        f",{'X' * 35},Y,,,,\n"  # cut to LinkedIn's 35 characters; an unknown country is left empty
    )


def test_cells_a_spreadsheet_would_run_as_formulas_are_escaped() -> None:
    frame = leads(
        {"first_name": '=HYPERLINK("http://x.example","a")', "last_name": "+1", "job_title": "-2+3"},
        {"first_name": "@SUM(A1)", "last_name": "-Lee", "company": "Ann-Marie = ok"},
    )
    rows = platform_rows(frame, "linkedin")
    assert with_lines(rows, "linkedin")["line"].to_list() == [
        ',"\'=HYPERLINK(""http://x.example"",""a"")","\'+1","\'-2+3",,,',
        ',"\'@SUM(A1)","\'-Lee",,Ann-Marie = ok,,',
    ]


def test_unmatchable_leads_are_left_out() -> None:
    frame = leads(
        {"email": "not an email", "first_name": "Solo"},  # nothing to match on anywhere
        {"phone": "06 12 34 56 78"},  # a phone without a country: invalid everywhere
        {"first_name": "Ann", "last_name": "Lee", "country": "US"},  # names: Meta and LinkedIn only
        {"first_name": "Ann", "last_name": "Lee", "country": "US", "zip": "94016"},  # Google's address match
    )
    assert platform_rows(frame, "meta")["lead_key"].to_list() == [3, 4]
    assert platform_rows(frame, "google")["lead_key"].to_list() == [4]
    assert platform_rows(frame, "linkedin")["lead_key"].to_list() == [3, 4]


def test_diff_changed_lead_is_removed_and_added() -> None:
    previous = pl.DataFrame({"lead_key": [1, 2, 3], "line": ["a", "b", "c"]})
    current = pl.DataFrame({"lead_key": [2, 3, 4], "line": ["b", "c2", "d"]})
    adds, removes = diff(current, previous)
    assert adds.rows() == [(3, "c2"), (4, "d")]
    assert removes.rows() == [(1, "a"), (3, "c")]
    adds, removes = diff(current, current)
    assert adds.height == 0 and removes.height == 0


# ── the spec ────────────────────────────────────────────────────────────────────────────────

MODEL = "kind: points\nbehaviour:\n  - {name: visit, event: page_view, points: 10, per: occurrence}\n"
PORTFOLIO = """\
name: t
product_lines:
  crm:
    bands: {cold: [0, 30], warm: [30, 60], hot: [60, 100]}
    stages:
      discovery: {model: m.yaml, promote_at: 40}
      evaluation: {model: m.yaml}
"""


def write_portfolio(tmp_path: Path, nurture: str) -> Path:
    (tmp_path / "m.yaml").write_text(MODEL)
    path = tmp_path / "portfolio.yaml"
    path.write_text(PORTFOLIO + nurture)
    return path


def test_load_audiences(tmp_path: Path) -> None:
    path = write_portfolio(
        tmp_path,
        "nurture:\n"
        "  tracks: {anything: [the tracks part is validated elsewhere]}\n"
        "  audiences:\n"
        "    warm-up:\n"
        "      platforms: [meta, linkedin]\n"
        "      where: {product_line: crm, stages: [discovery], bands: [cold, warm], score_below: 40}\n"
        "    by-tracks: {platforms: [google], description: filled by tracks, default_country: fr}\n",
    )
    audiences = load_audiences(load_portfolio(path))
    assert list(audiences) == ["warm-up", "by-tracks"]
    assert audiences["warm-up"].platforms == ["meta", "linkedin"]
    assert audiences["warm-up"].where is not None and audiences["warm-up"].where.score_below == 40
    assert audiences["by-tracks"].default_country == "FR"
    assert load_audiences(load_portfolio(write_portfolio(tmp_path, ""))) == {}


def test_bad_audiences_name_file_line_and_path(tmp_path: Path) -> None:
    path = write_portfolio(
        tmp_path,
        "nurture:\n"  # line 8
        "  audiences:\n"
        "    a:\n"
        "      platforms: [meta, tiktok]\n"  # line 11
        "    b:\n"
        "      platforms: []\n"  # line 13
        "      colour: red\n"  # line 14
        "    c: {platforms: [meta, meta], default_country: Narnia}\n",  # line 15
    )
    with pytest.raises(SpecError) as caught:
        load_audiences(load_portfolio(path))
    text = str(caught.value)
    assert f"{path}:11: nurture.audiences.a.platforms[1]: Input should be 'meta', 'google' or 'linkedin'" in text
    assert f"{path}:13: nurture.audiences.b.platforms: List should have at least 1 item" in text
    assert f"{path}:14: nurture.audiences.b.colour: unknown field 'colour'" in text
    assert f"{path}:15: nurture.audiences.c.platforms: platforms are listed twice" in text
    assert f"{path}:15: nurture.audiences.c.default_country: 'Narnia' is not an ISO 3166 alpha-2" in text


def test_criteria_checked_against_the_portfolio(tmp_path: Path) -> None:
    path = write_portfolio(
        tmp_path,
        "nurture:\n"
        "  audiences:\n"
        "    a:\n"
        "      platforms: [meta]\n"
        "      where:\n"
        "        product_line: crm\n"
        "        stages: [discovery, purchase]\n"  # line 14
        "        bands: [tepid]\n"  # line 15
        "    b: {platforms: [meta], where: {product_line: erp}}\n",  # line 16
    )
    with pytest.raises(SpecError) as caught:
        load_audiences(load_portfolio(path))
    text = str(caught.value)
    assert f"{path}:14: nurture.audiences.a.where.stages[1]: unknown stage 'purchase'" in text
    assert (
        f"{path}:15: nurture.audiences.a.where.bands[0]: unknown band 'tepid' of crm; bands: ['cold', 'hot', 'warm']"
        in text
    )
    assert f"{path}:16: nurture.audiences.b.where.product_line: unknown product line 'erp'; known: ['crm']" in text
    empty_range = "    c: {platforms: [meta], where: {product_line: crm, score_at_least: 50, score_below: 40}}\n"
    path = write_portfolio(tmp_path, "nurture:\n  audiences:\n" + empty_range)
    with pytest.raises(SpecError, match=r"portfolio.yaml:10: nurture.audiences.c.where: score_at_least 50.0 must be"):
        load_audiences(load_portfolio(path))


def test_many_phones_parsed_in_processes_come_back_in_order_as_one_process_parses_them() -> None:
    regions = ["FR", "US", "DE", None]
    pairs = [(f"0{n % 10} {n:04d} {n % 97:02d} {n % 89:02d}", regions[n % 4]) for n in range(3_000)]
    pairs += [("+44 844 412 4653", None), ("not a phone", "FR"), ("12", "US")]
    spread = e164_all(pairs, processes=2, spread_from=1)
    assert spread == [e164(phone, region) for phone, region in pairs]
    assert spread[-3:] == ["+448444124653", None, None] and sum(number is not None for number in spread) > 2_000


def test_resolve_phones_parses_only_new_or_changed_phones() -> None:
    frame = leads(
        {"phone": "06 12 34 56 78", "country": "FR"},  # remembered as parsed: not parsed again
        {"phone": "06 12 34 56 79", "country": "FR"},  # phone changed since it was remembered
        {"phone": "06 12 34 56 78", "country": "BE"},  # country changed: read in another region
        {"phone": "+44 844 412 4653"},  # never seen
        {},  # no phone
    ).with_columns(
        cached_phone=pl.Series(["06 12 34 56 78", "06 00 00 00 00", "06 12 34 56 78", None, None]),
        cached_region=pl.Series(["FR", "FR", "FR", None, None]),
        # A sentinel proves the remembered value is used as is.
        cached_e164=pl.Series(["+33000000000", "+33600000000", "+33612345678", None, None]),
    )
    resolved, fresh = resolve_phones(frame, None)
    assert resolved["e164"].to_list() == ["+33000000000", "+33612345679", "+32612345678", "+448444124653", None]
    assert sorted(fresh.rows()) == [
        (2, "06 12 34 56 79", "FR", "+33612345679"),
        (3, "06 12 34 56 78", "BE", "+32612345678"),
        (4, "+44 844 412 4653", None, "+448444124653"),
    ]
