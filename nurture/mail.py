"""Email rendering: subject, text and HTML from templates; pure functions, no I/O beyond reading templates.

Every email is a pair of Jinja2 templates, ``NAME.txt.j2`` and ``NAME.html.j2``, that extend the
layouts in ``templates/email/`` and give their subject in ``{% block subject %}`` (in the text
template). The environment is sandboxed (marketers edit templates), escapes HTML in ``.html.j2`` files
(``select_autoescape`` does not cover that suffix by default, DESIGN §7) and uses ``StrictUndefined``:
a field a template names but the context lacks is an error, found by ``validate_templates`` before any
send rather than an empty string in a customer's inbox.

``nurture.messages`` turns what renders here into the bytes that are sent.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from store.shapes import LEAD_COLUMNS

# leadscore's own templates, installed beside its packages (package data). Found from this file, not by
# importing `templates`: a project's own `templates/` folder in the working directory would shadow that import.
PROJECT_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_SPACES = re.compile(r"\s+")


class MailError(ValueError):
    """A template that cannot be rendered (or a header ``nurture.messages`` cannot write); ``problems``
    lists ``(file, line, message)``."""

    def __init__(self, problems: list[tuple[str, int | None, str]]):
        self.problems = problems
        lines = (f"{file}{f':{line}' if line else ''}: {message}" for file, line, message in problems)
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Sender:
    """Who a message is from, and (for marketing email) where to unsubscribe and the postal address.

    ``unsubscribe_url`` and ``unsubscribe_mailto`` may hold ``{token}``, ``{lead_id}`` and
    ``{message_id}`` placeholders; ``{token}`` is the lead id signed with ``LEADSCORE_UNSUBSCRIBE_SECRET``
    (``nurture.tokens``), so links cannot be forged for other leads and the service reads the lead from it.
    """

    name: str
    address: str
    postal_address: str = ""
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"

    def context(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address, "postal_address": self.postal_address}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Mailer:
    """A sandboxed Jinja environment over template folders (the first folder wins: a portfolio's own
    ``templates/`` overrides the project's)."""

    def __init__(self, folders: Iterable[Path | str] = ()):
        self.folders = [Path(folder) for folder in folders if Path(folder).is_dir()]
        if PROJECT_TEMPLATES not in self.folders:
            self.folders.append(PROJECT_TEMPLATES)
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(self.folders),
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "html.j2"), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # templates do not change during a run; checking costs a stat per render
            cache_size=-1,  # a plain dict: lookups in the default LRU cache cost ≈ 80 µs per template here
        )

    @classmethod
    def for_portfolio(cls, portfolio_path: Path | str) -> Mailer:
        return cls([Path(portfolio_path).parent / "templates"])

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Subject, text and CSS-inlined HTML of template pair ``email/NAME``; raises ``MailError``."""
        text_template = self._template(f"email/{name}.txt.j2")
        html_template = self._template(f"email/{name}.html.j2")
        if "subject" not in text_template.blocks:
            raise MailError([(self._file(text_template.name), None, "no {% block subject %} in the text template")])
        try:
            subject_context = text_template.new_context(dict(context))
            subject = _SPACES.sub(" ", "".join(text_template.blocks["subject"](subject_context))).strip()
            full = {**context, "subject": subject}
            text = text_template.render(full)
            html = html_template.render(full)
        except TemplateError as exc:
            raise MailError([self._locate(exc, sys.exc_info()[2])]) from exc
        return Rendered(subject=subject, text=text, html=_INLINER.inline(html))

    def _template(self, path: str) -> Any:
        try:
            return self.env.get_template(path)
        except TemplateNotFound as exc:
            searched = ", ".join(str(folder) for folder in self.folders)
            raise MailError([(path, None, f"template not found (searched {searched})")]) from exc
        except TemplateError as exc:  # a syntax error carries its own file and line
            raise MailError([self._locate(exc, sys.exc_info()[2])]) from exc

    def _file(self, name: str | None) -> str:
        for folder in self.folders:
            candidate = folder / (name or "")
            if name and candidate.is_file():
                return str(candidate)
        return name or "<template>"

    def _locate(self, exc: TemplateError, tb: TracebackType | None) -> tuple[str, int | None, str]:
        """The template file and line an error comes from: Jinja maps template frames to their source."""
        file, line = getattr(exc, "filename", None), getattr(exc, "lineno", None)
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if name.endswith(".j2"):
                file, line = name, tb.tb_lineno
            tb = tb.tb_next
        message = getattr(exc, "message", None) or str(exc)
        return (file or "<template>", line, message)


def validate_templates(mailer: Mailer, names: Iterable[str], context: Mapping[str, Any]) -> None:
    """Render each template pair with ``context``; every problem (file, line, missing variable) at once."""
    problems: list[tuple[str, int | None, str]] = []
    for name in dict.fromkeys(names):
        try:
            mailer.render(name, context)
        except MailError as exc:
            problems += exc.problems
    if problems:
        raise MailError(problems)


def lead_context(lead: Mapping[str, Any]) -> dict[str, Any]:
    """A lead as templates see it: every standard field (``None`` when unknown) and its ``attributes``."""
    return {**{name: lead.get(name) for name in LEAD_COLUMNS}, "attributes": dict(lead.get("attributes") or {})}


SAMPLE_LEAD = lead_context(
    {
        "lead_id": "LD-SAMPLE",
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "country": "GB",
        "owner_email": "owner@example.com",
        "attributes": {"job_title": "Head of Data", "industry": "software"},
    }
)


def sample_context(kind: str, sender: Sender) -> dict[str, Any]:
    """The context validation renders a template of ``kind`` with: the same keys a real send gets."""
    common = {
        "lead": SAMPLE_LEAD,
        "product_line": {"name": "sample-line", "title": "Sample Line"},
        "journey": {"stage": "discovery", "score": 42.5, "band": "warm", "qualification": "MQL"},
        "sender": sender.context(),
    }
    if kind == "owner_alert":
        return {
            **common,
            "unsubscribe_url": None,
            "trigger": {"name": "hot lead", "direction": "up", "score_before": 30.0},
            "breakdown": [{"rule": "pricing page", "points": 15.0}, {"rule": "small company", "points": -5.0}],
        }
    return {
        **common,
        "unsubscribe_url": "https://example.com/unsubscribe?t=sample",
        "reasons": [{"rule": "pricing page", "points": 15.0}],
        "track": {"name": "sample-track", "step": 0},
    }
