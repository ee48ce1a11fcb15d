"""``leadscore api``: start the HTTP service (uvicorn), and ``leadscore api keys`` to manage its API keys.

The service package is not imported here (flows and service are separate rooms): uvicorn loads
``service.app:create_app`` by name, in this process or in each worker.
"""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal

api_app = typer.Typer(help="The HTTP service: events, email feedback, unsubscribes, live scores.")
keys_app = typer.Typer(help="API keys of the service (stored hashed; the key is shown once).")
api_app.add_typer(keys_app, name="keys")
app.add_typer(api_app, name="api")


@api_app.callback(invoke_without_command=True)
def api(
    ctx: typer.Context,
    portfolio: PortfolioOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (a reverse proxy terminates TLS)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes (one per core; SQLite: 1 or 2)")] = 1,
) -> None:
    """Start the service on the store and portfolio of the other commands (LEADSCORE_* settings)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from nurture.tokens import SecretError, check_secret
    from store.settings import get_settings

    settings = get_settings()
    try:
        check_secret(settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None)
    except SecretError as exc:
        raise base.fail("the service needs the unsubscribe secret", exc) from exc
    os.environ["LEADSCORE_PORTFOLIO"] = str(Path(base.portfolio_path(portfolio)).resolve())
    console.print(
        f"leadscore api on http://{host}:{port} (OpenAPI at /docs), store {settings.database_url.split('://')[0]}"
    )
    # No access log: paths carry unsubscribe tokens and lead ids; /metrics counts requests by route instead.
    uvicorn.run("service.app:create_app", factory=True, host=host, port=port, workers=workers, access_log=False)


Scopes = Annotated[
    list[str], typer.Option("--scope", "-s", help="events:write, scores:read or admin (repeat for several)")
]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who uses the key")], scope: Scopes, json_out: JsonOpt = False
) -> None:
    """Create a key with the given scopes and print it (it cannot be shown again)."""
    from flows.database import engine_for
    from store.api_keys import create_key
    from store.settings import get_settings

    try:
        key, info = create_key(engine_for(get_settings().database_url), name, scope)
    except ValueError as exc:
        raise base.fail("cannot create the key", exc) from exc
    if json_out:
        print(base.to_json({"key": key, "key_id": info.key_id, "name": info.name, "scopes": list(info.scopes)}))
        return
    console.print(
        f"key {literal(info.key_id)} for {literal(name)} ({', '.join(info.scopes)}): "
        "store it now, it is not shown again:",
    )
    print(key)


@keys_app.command("list")
def keys_list(json_out: JsonOpt = False) -> None:
    """The keys (ids, names, scopes, created, revoked); never their secrets."""
    from flows.database import engine_for
    from store.api_keys import list_keys
    from store.settings import get_settings

    keys = list_keys(engine_for(get_settings().database_url))
    if json_out:
        print(base.to_json([{**info.__dict__, "scopes": list(info.scopes)} for info in keys]))
        return
    table = Table("key id", "name", "scopes", "created", "revoked")
    for info in keys:
        table.add_row(
            info.key_id,
            literal(info.name),
            ", ".join(info.scopes),
            f"{info.created_at:%Y-%m-%d %H:%M}",
            f"{info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: a running service refuses it within 5 seconds."""
    from flows.database import engine_for
    from store.api_keys import revoke_key
    from store.settings import get_settings

    if not revoke_key(engine_for(get_settings().database_url), key_id):
        raise base.fail(f"no live key {key_id}", code=1)
    console.print(f"key {literal(key_id)} revoked")


def print_service_hint(database_url: str, portfolio: Path, lead_id: str) -> None:
    """How to start the service on a store (``leadscore demo`` prints it) and one look-up to try."""
    console.print("\nThe live service on this store (one terminal; the secret signs unsubscribe links):", markup=False)
    lines = [
        f"export LEADSCORE_DATABASE_URL={database_url} LEADSCORE_PORTFOLIO={portfolio}",
        'export LEADSCORE_UNSUBSCRIBE_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(32))")',
        "KEY=$(leadscore api keys create demo --scope scores:read | tail -1)",
        "leadscore api --port 8000 &",
        f'curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/leads/{lead_id}/score',
    ]
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
