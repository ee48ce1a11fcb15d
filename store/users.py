"""Console users: created with an argon2 hash of their password (argon2-cffi), checked at sign-in.

Unlike API keys, passwords are chosen by people and guessable, so they get a slow, salted, memory-hard hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, insert, select, update

from store.console_tables import ConsoleUser

ROLES = ("marketing", "sales", "admin")
MIN_PASSWORD = 10
_TABLE = ConsoleUser.__table__  # type: ignore[attr-defined]
_HASHER = PasswordHasher()
# Checked when the email is unknown, so a sign-in takes as long for a wrong email as for a wrong password.
_DUMMY = _HASHER.hash("no such user: compare against something")


@dataclass(frozen=True)
class User:
    email: str
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None


def _user(row: object) -> User:
    return User(row.email, row.name, row.role, row.created_at, row.disabled_at)  # type: ignore[attr-defined]


def add_user(engine: Engine, email: str, name: str, role: str, password: str) -> User:
    """Store a new user; a bad role, a short password or a taken email is a ValueError saying which."""
    email = email.strip().lower()
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    if "@" not in email:
        raise ValueError(f"{email!r} is not an email address")
    if get_user(engine, email) is not None:
        raise ValueError(f"a user {email!r} exists already")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(_TABLE).values(
                email=email, name=name, role=role, password_hash=_HASHER.hash(password), created_at=now
            )
        )
    return User(email, name, role, now, None)


def get_user(engine: Engine, email: str) -> User | None:
    """The user with that email, disabled or not."""
    with engine.connect() as conn:
        row = conn.execute(select(_TABLE).where(_TABLE.c.email == email.strip().lower())).first()
    return None if row is None else _user(row)


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as conn:
        return [_user(row) for row in conn.execute(select(_TABLE).order_by(_TABLE.c.email))]


def check_password(engine: Engine, email: str, password: str) -> User | None:
    """The live user whose password this is, or None (unknown, wrong password or disabled). An outdated
    hash (older parameters) is replaced by a current one on success."""
    with engine.connect() as conn:
        row = conn.execute(select(_TABLE).where(_TABLE.c.email == email.strip().lower())).first()
    try:
        _HASHER.verify(row.password_hash if row is not None else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled_at is not None:
        return None
    if _HASHER.check_needs_rehash(row.password_hash):
        with engine.begin() as conn:
            conn.execute(update(_TABLE).where(_TABLE.c.email == row.email).values(password_hash=_HASHER.hash(password)))
    return _user(row)


def disable_user(engine: Engine, email: str) -> bool:
    """Disable a user (kept for the audit); their open sessions stop at the next request."""
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.email == email.strip().lower(), _TABLE.c.disabled_at.is_(None))
        .values(disabled_at=datetime.now(UTC))
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1
