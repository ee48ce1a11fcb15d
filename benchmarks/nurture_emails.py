"""Nurture benchmark: render + write to the outbox (target ≥ 2,000 emails/s), then a whole nurture run.

1. ``compose`` N personalised demo emails (Jinja, sandboxed, CSS inlined, MIME built), then ``deliver``
   them to the ``.eml`` outbox with the at-most-once bookkeeping (intents, outcomes) in SQLite, each
   message stamped with its Date and DKIM-signed (a fresh 2048-bit RSA key; ``--no-dkim`` to compare).
2. A full ``nurture_once`` over N leads with a journey each: read state, decide exits/enrolments/steps
   in Polars, render, deliver, record.

    .venv/bin/python benchmarks/nurture_emails.py --emails 10000
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # inside the demo's send window


def render_and_write(workdir: Path, n: int, dkim: bool) -> dict[str, float]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from nurture.delivery import Options, deliver
    from nurture.mail import Mailer, lead_context
    from nurture.messages import compose
    from nurture.signing import DkimSigner
    from nurture.spec import load_nurture
    from nurture.transports import FilesOnly
    from stages.portfolio import load_portfolio
    from store.db import make_engine
    from store.outbox import SqlOutbox

    signer = None
    if dkim:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signer = DkimSigner(key, selector="bench", domain="acme-cloud.example")
    portfolio = load_portfolio(PORTFOLIO)
    sender = load_nurture(portfolio).sender
    assert sender is not None
    mailer = Mailer.for_portfolio(PORTFOLIO)
    engine = make_engine(f"sqlite:///{workdir / 'render.db'}")
    cpu = time.process_time()
    started = time.perf_counter()
    messages = []
    for i in range(n):
        lead = lead_context(
            {"lead_id": f"LD-{i:07d}", "email": f"lead{i}@client.example", "first_name": f"Ada{i}",
             "company": f"Company {i % 500}", "attributes": {"industry": "software"}}
        )  # fmt: skip
        context = {
            "lead": lead,
            "product_line": {"name": "crm-suite", "title": "Acme CRM Suite"},
            "journey": {"stage": "discovery", "score": 12.5, "band": "cold", "qualification": None},
            "reasons": [{"rule": "pricing page", "points": 10.0}, {"rule": "white paper", "points": 5.0}],
            "track": {"name": "crm-warm-up", "step": 0},
        }
        messages.append(
            compose(
                mailer, "nurture_intro" if i % 2 else "nurture_case_study", context, kind="nurture",
                ref=f"enrolment:{i}:0", lead_key=i + 1, run_id="bench", to=lead["email"], sender=sender.sender(),
            )
        )  # fmt: skip
    rendered, rendered_cpu = time.perf_counter(), time.process_time()
    options = Options(folder=workdir / "outbox", signer=signer)
    results = deliver(SqlOutbox(engine), FilesOnly(), messages, options, now=MONDAY)
    written, written_cpu = time.perf_counter(), time.process_time()
    assert all(r.status == "sent" for r in results)
    return {
        "render_s": rendered - started,
        "deliver_s": written - rendered,
        "total_s": written - started,
        "render_cpu_s": rendered_cpu - cpu,
        "deliver_cpu_s": written_cpu - rendered_cpu,
    }


def full_run(workdir: Path, n: int) -> dict[str, float]:
    from sqlalchemy import insert

    from flows.nurture_run import nurture_once
    from nurture.context import load_context
    from store.db import make_engine
    from store.settings import Settings
    from store.tables import Journey, Lead

    engine = make_engine(f"sqlite:///{workdir / 'run.db'}")
    leads = [
        {"key": i + 1, "lead_id": f"LD-{i:07d}", "email": f"lead{i}@client.example", "first_name": f"Ada{i}",
         "email_opt_in": True, "attributes": {"industry": "software"}}
        for i in range(n)
    ]  # fmt: skip
    journeys = [
        {"lead_key": i + 1, "product_line": "crm-suite", "stage": "discovery", "status": "active", "score": 10.0,
         "band": "cold"}
        for i in range(n)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Lead.__table__), leads)  # type: ignore[attr-defined]
        conn.execute(insert(Journey.__table__), journeys)  # type: ignore[attr-defined]
    ctx = load_context(PORTFOLIO)
    settings = Settings(outbox_dir=workdir / "outbox-run", smtp_host=None)
    started = time.perf_counter()
    summary = nurture_once(engine, ctx, MONDAY, settings=settings, run_id="bench-run")
    first = time.perf_counter() - started
    assert summary.deliveries == {"sent": n}, summary.deliveries
    started = time.perf_counter()
    again = nurture_once(engine, ctx, MONDAY, settings=settings, run_id="bench-rerun")
    rerun = time.perf_counter() - started
    assert again.deliveries == {}
    return {"run_s": first, "rerun_s": rerun}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--no-dkim", action="store_true", help="write the emails unsigned")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadscore-nurture-bench-") as tmp:
        workdir = Path(tmp)
        r = render_and_write(workdir, args.emails, dkim=not args.no_dkim)
        print(f"DKIM signing: {'off' if args.no_dkim else 'on (RSA 2048)'}")
        print(f"render {args.emails} emails: {r['render_s']:.2f} s ({args.emails / r['render_s']:,.0f}/s)")
        print(f"sign + write to outbox + record: {r['deliver_s']:.2f} s ({args.emails / r['deliver_s']:,.0f}/s)")
        print(f"render + sign + write: {args.emails / r['total_s']:,.0f} emails/s wall clock (target ≥ 2,000)")
        cpu = r["render_cpu_s"] + r["deliver_cpu_s"]
        print(
            f"CPU time of this process: render {r['render_cpu_s']:.2f} s + write {r['deliver_cpu_s']:.2f} s = "
            f"{args.emails / cpu:,.0f} emails per CPU-second (the machine is shared: see the load average)"
        )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        f = full_run(workdir, args.emails)
        print(
            f"full nurture run, {args.emails} leads enrolled and emailed: {f['run_s']:.2f} s "
            f"({args.emails / f['run_s']:,.0f} emails/s); re-run (nothing due): {f['rerun_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
