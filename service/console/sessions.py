"""Console sessions in signed cookies (itsdangerous), CSRF tokens bound to them, and role permissions.

Every visitor gets a cookie holding a random session id (and, once signed in, the user's email); the cookie
is signed and timestamped, so it cannot be forged or kept past ``session_hours``. A form's CSRF token is an
HMAC of the session id: a page of another site can neither read it nor guess it. Signing in issues a new
session id (no fixation). The user is read from the store on each request, so a disabled user is out at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from itsdangerous import BadSignature, URLSafeTimedSerializer

from store.users import User, get_user

COOKIE = "leadscore_console"
# What each role may do (``admin`` may do everything).
PERMISSIONS: dict[str, frozenset[str]] = {
    "marketing": frozenset({"leads", "adjust", "tracks", "queue_all", "nurture", "models", "report"}),
    "sales": frozenset({"leads", "adjust", "move", "queue_own", "decide"}),
    "admin": frozenset(
        {"leads", "adjust", "tracks", "move", "queue_all", "decide", "nurture", "models", "report", "users"}
    ),
}


class SignInRequired(Exception):
    """Raised by a page that needs a user when there is none: the console answers with the sign-in page."""


@dataclass
class Session:
    sid: str
    user: User | None
    csrf: str
    fresh: bool  # the cookie must be (re)issued

    def can(self, permission: str) -> bool:
        return self.user is not None and permission in PERMISSIONS.get(self.user.role, frozenset())


class Sessions:
    """Reads and issues the session cookie of one console (one secret)."""

    def __init__(self, secret: str, max_age_seconds: float) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="leadscore-console-session")
        self.csrf_key = hashlib.sha256(b"leadscore-console-csrf\0" + secret.encode()).digest()
        self.max_age = max_age_seconds

    def csrf_for(self, sid: str) -> str:
        return hmac.new(self.csrf_key, sid.encode(), hashlib.sha256).hexdigest()

    def new(self, user: User | None = None) -> Session:
        sid = secrets.token_urlsafe(24)
        return Session(sid, user, self.csrf_for(sid), fresh=True)

    async def load(self, request: Request) -> Session:
        """The request's session (its user re-read from the store); a new anonymous one when the cookie is
        missing, forged, expired, or names a user who no longer may sign in."""
        raw = request.cookies.get(COOKIE)
        try:
            data = self.serializer.loads(raw, max_age=self.max_age) if raw else None
        except BadSignature:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return self.new()
        user = None
        if isinstance(data.get("user"), str):
            engine = request.app.state.service.engine
            user = await run_in_threadpool(get_user, engine, data["user"])
            if user is None or user.disabled_at is not None:
                return self.new()
        return Session(data["sid"], user, self.csrf_for(data["sid"]), fresh=False)

    def issue(self, response: Response, session: Session, request: Request) -> None:
        """Set the cookie: HttpOnly, SameSite=Lax, Secure when the request came over HTTPS (behind a proxy
        with ``--proxy-headers``)."""
        value = self.serializer.dumps({"sid": session.sid, "user": session.user.email if session.user else None})
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.max_age),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/console",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/console")


async def read_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form's fields, after checking its CSRF token against the session (403 otherwise)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "a form post is expected")
    fields = {name: values[-1] for name, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if not hmac.compare_digest(fields.pop("csrf", ""), session.csrf):
        raise HTTPException(403, "the form expired or came from elsewhere: reload the page and try again")
    return fields


def require(session: Session, permission: str) -> User:
    """The signed-in user, if the role allows ``permission`` (sign-in page without user, 403 without right)."""
    if session.user is None:
        raise SignInRequired
    if not session.can(permission):
        raise HTTPException(403, f"your role ({session.user.role}) does not allow this")
    return session.user


def context(session: Session, **values: Any) -> dict[str, Any]:
    """What every page template gets: the user, what they may do, and the CSRF token for its forms."""
    return {"user": session.user, "can": session.can, "csrf": session.csrf, **values}
