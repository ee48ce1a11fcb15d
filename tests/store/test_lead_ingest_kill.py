"""A leads load (the columnar path) killed with SIGKILL mid-file, then run again: whole chunks only, no
lead doubled or lost, every visitor claim and the one reject stored once."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from store.bulk_indexes import missing_deferred_indexes
from store.db import make_engine
from store.identity_tables import VisitorLink
from store.tables import IngestReject, Lead
from tests.store.test_ingest_kill import kill_after_first_chunk, url  # noqa: F401  (url: the store fixture)

ROOT = Path(__file__).resolve().parents[2]
LEADS = 40_000
LOAD = """
import sys
from pathlib import Path
from store.db import make_engine
from store.ingest import ingest_leads
import store.bulk_indexes
store.bulk_indexes.BULK_BYTES = 0  # a first bulk load: the search indexes are dropped while it runs
engine = make_engine(sys.argv[1])
print(ingest_leads(engine, Path(sys.argv[2]), product_lines={"crm"}, chunk_size=2_000).summary())
"""


def _file(tmp_path: Path) -> Path:
    rows = [
        f"L{n},l{n}@acme.com,{'true' if n % 2 else ''},crm,{f'V{n}' if n % 10 == 0 else ''}\n" for n in range(LEADS)
    ]
    rows[7] = "L7,not an email,,crm,\n"
    path = tmp_path / "leads.csv"
    path.write_text("lead_id,email,email_opt_in,product_interest,anonymous_ids\n" + "".join(rows))
    return path


def _load(store: str, path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", LOAD, store, str(path)], env=env, stdout=subprocess.PIPE, text=True)


def _counts(store: str) -> tuple[int, int, int, int]:
    engine = make_engine(store)
    leads, links, rejects = Lead.__table__, VisitorLink.__table__, IngestReject.__table__
    with engine.connect() as conn:
        stored = conn.execute(select(func.count(), func.count(leads.c.lead_id.distinct()))).one()
        linked = conn.execute(select(func.count()).select_from(links)).scalar_one()
        refused = conn.execute(select(func.count()).select_from(rejects)).scalar_one()
    engine.dispose()
    return stored[0], stored[1], linked, refused


def _missing_search_indexes(store: str) -> int:
    engine = make_engine(store)
    missing = missing_deferred_indexes(engine, "leads")
    engine.dispose()
    return len(missing)


def test_a_leads_load_killed_mid_file_then_run_again_leaves_no_partial_or_doubled_rows(
    url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = _file(tmp_path)
    kill_after_first_chunk(_load(url, path), lambda: _counts(url)[0])
    stored, _, linked, _ = _counts(url)
    # Whole chunks of 2,000 rows only (the first holds the one bad row), each with its visitor claims.
    assert 0 < stored < LEADS - 1 and (stored + 1) % 2_000 == 0
    assert linked == (stored + 1) // 10
    assert _missing_search_indexes(url) == 4  # the killed first load had dropped them

    rerun = _load(url, path)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert f"inserted {LEADS - 1 - stored}, updated 0, rejected 1" in out
    assert _counts(url) == (LEADS - 1, LEADS - 1, LEADS // 10, 1)
    assert _missing_search_indexes(url) == 0  # the re-run built them first
