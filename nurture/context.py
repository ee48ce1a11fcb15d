"""What a nurture run, a preview and the CLI load from a portfolio before touching the database: the
nurture spec, the compiled tracks, the template environment, the sender and the exclusions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nurture.exclusions import Exclusions, load_exclusions
from nurture.mail import Mailer, Sender
from nurture.spec import NurtureSpec, load_nurture
from nurture.tracks import Tracks, compile_tracks
from stages.portfolio import Portfolio, load_portfolio


@dataclass(frozen=True)
class Context:
    portfolio: Portfolio
    spec: NurtureSpec
    tracks: Tracks
    mailer: Mailer
    sender: Sender | None
    exclusions: Exclusions


def load_context(portfolio_path: Path | str) -> Context:
    portfolio = load_portfolio(portfolio_path)
    mailer = Mailer.for_portfolio(portfolio.path)
    spec = load_nurture(portfolio, mailer)
    sender = spec.sender.sender() if spec.sender else None
    tracks = compile_tracks(spec, portfolio.spec.timezone)
    return Context(portfolio, spec, tracks, mailer, sender, load_exclusions(portfolio))
