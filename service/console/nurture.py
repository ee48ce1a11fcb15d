"""The nurture page (marketing, admins): tracks, their steps and A/B variants with what each email did (the
report's own queries and renderers), a preview of any email step as any lead (the exact message a run would
send), and a test-send of it to an address through the configured transport (audited, not recorded as a send).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from nurture.composing import PreviewError, preview, send_preview
from nurture.report.experiments import EMAIL_COUNTS, uplift_section
from nurture.report.sections import ReportScope
from nurture.spec import Step
from service.console.common import back, render, session_of
from service.console.sessions import read_form, require
from store import audit, reports
from store.live import lead_key

router = APIRouter(prefix="/console", include_in_schema=False)


def describe(step: Step) -> str:
    """A step in words, as the page lists it."""
    if step.variants:
        return "email, A/B: " + ", ".join(f"{v.template} ({v.weight:g})" for v in step.variants)
    if step.email:
        return f"email {step.email}"
    if step.wait:
        return f"wait {step.wait}"
    if step.audience:
        return f"add to audience {step.audience}"
    if step.leave_audience:
        return f"remove from audience {step.leave_audience}"
    assert step.branch is not None
    return f"if {step.branch.if_} then {step.branch.then} else {step.branch.else_}"


def _overview(service: Any, spec: Any) -> dict[str, Any]:
    """Per track its steps; per email step each template (variant) with its counts and their shares."""
    emails = reports.nurture_emails(service.engine)
    counts = {(row["track"], row["step"], row["template"]): row for row in emails.iter_rows(named=True)}
    tracks = []
    for name, track in spec.tracks.items():
        steps = []
        for index, step in enumerate(track.steps):
            variants = [
                {"template": template}
                | {key: counts.get((name, index, template), {}).get(key, 0) for key in EMAIL_COUNTS}
                for template in step.templates
            ]
            steps.append({"index": index, "name": step.name, "kind": step.kind, "what": describe(step),
                          "variants": variants})  # fmt: skip
        tracks.append({"name": name, "product_line": track.entry.product_line, "holdout": track.holdout,
                       "steps": steps})  # fmt: skip
    scope = ReportScope(service.portfolio, [], datetime.now(UTC))
    uplift = uplift_section(scope, reports.nurture_arms(service.engine))
    return {"tracks": tracks, "counts": EMAIL_COUNTS, "uplift": uplift}


@router.get("/nurture", response_class=HTMLResponse)
async def nurture(request: Request) -> HTMLResponse:
    session = await session_of(request)
    require(session, "nurture")
    service, console = request.app.state.service, request.app.state.console
    found = await run_in_threadpool(_overview, service, console.nurture.spec)
    return render(request, session, "nurture.html.j2", **found)


def _compose(request: Request, lead_id: str, track: str, step: int, to: str | None = None) -> Any:
    service, console = request.app.state.service, request.app.state.console
    try:
        return preview(service.engine, console.nurture, lead_id, track, step, service.secrets[0], to=to)
    except PreviewError as exc:
        raise HTTPException(400, str(exc)) from None


def _step(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise HTTPException(400, "step: the email step's index in the track") from None


@router.get("/nurture/preview", response_class=HTMLResponse)
async def preview_page(request: Request, track: str = "", step: str = "", lead: str = "") -> HTMLResponse:
    """The email ``lead`` gets at ``step`` of ``track``: subject, the HTML in a sandboxed frame, the text part."""
    session = await session_of(request)
    require(session, "nurture")
    message = await run_in_threadpool(_compose, request, lead.strip(), track, _step(step))
    parsed = message.parsed()
    html, text = parsed.get_body(("html",)), parsed.get_body(("plain",))
    return render(
        request,
        session,
        "preview.html.j2",
        track=track,
        step=_step(step),
        lead=lead.strip(),
        message=message,
        html=html.get_content() if html is not None else "",
        text=text.get_content() if text is not None else "",
    )


@router.post("/nurture/test-send")
async def test_send(request: Request) -> Response:
    """Send the preview to an address, through the transport the runs use; audited on the lead."""
    session = await session_of(request)
    user = require(session, "nurture")
    form = await read_form(request, session)
    to, lead_id = form.get("to", "").strip(), form.get("lead", "")
    track, step = form.get("track", ""), form.get("step", "")
    if "@" not in to or any(c in to for c in " ,;<>\r\n") or len(to) > 254:
        raise HTTPException(400, "to: one email address")
    service = request.app.state.service
    message = await run_in_threadpool(_compose, request, lead_id, track, _step(step), to)
    try:
        await run_in_threadpool(send_preview, message, service.settings, to)
    except Exception as exc:  # the mail server's answer, shown to the person who asked
        raise HTTPException(502, f"test-send to {to} failed: {exc}") from None
    key = await run_in_threadpool(lead_key, service.engine, lead_id)
    detail = {"track": track, "step": int(step), "to": to, "subject": message.subject}
    await service.writer.call(lambda: audit.log(service.engine, user.email, "test_send", lead_key=key, **detail))
    shown = urlencode({"track": track, "step": int(step), "lead": lead_id, "done": "testsent"})
    return back(f"/console/nurture/preview?{shown}")
