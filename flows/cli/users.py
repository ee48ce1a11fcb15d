"""``leadscore users add|list|disable``: the console's users (``users add`` creates the first admin)."""

import sys
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, app, console, literal

users_app = typer.Typer(help="Users of the console (passwords stored as argon2 hashes).")
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Argument(help="The user's email: they sign in with it")],
    name: Annotated[str, typer.Option(help="Shown in the console and the audit")] = "",
    role: Annotated[str, typer.Option(help="marketing, sales or admin")] = "admin",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Create a user; the password is asked twice (hidden), or read from stdin for scripts."""
    from flows.database import engine_for
    from store.settings import get_settings
    from store.users import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = add_user(engine_for(get_settings().database_url), email, name or email.split("@")[0], role, password)
    except ValueError as exc:
        raise base.fail("cannot add the user", exc) from exc
    console.print(f"user {literal(user.email)} ({user.role}) added")


@users_app.command("list")
def users_list(json_out: JsonOpt = False) -> None:
    """The users, their roles and whether they may sign in."""
    from flows.database import engine_for
    from store.settings import get_settings
    from store.users import list_users

    users = list_users(engine_for(get_settings().database_url))
    if json_out:
        print(base.to_json([user.__dict__ for user in users]))
        return
    table = Table("email", "name", "role", "created", "disabled")
    for user in users:
        disabled = f"{user.disabled_at:%Y-%m-%d %H:%M}" if user.disabled_at else ""
        table.add_row(literal(user.email), literal(user.name), user.role, f"{user.created_at:%Y-%m-%d}", disabled)
    console.print(table)


@users_app.command("disable")
def users_disable(email: str) -> None:
    """Stop a user from signing in; their open sessions end at their next request."""
    from flows.database import engine_for
    from store.settings import get_settings
    from store.users import disable_user

    if not disable_user(engine_for(get_settings().database_url), email):
        raise base.fail(f"no active user {email}", code=1)
    console.print(f"user {literal(email)} disabled")
