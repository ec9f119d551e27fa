"""`pylon keys ...`: manage API keys directly in the database (no running server needed).

Changes land in the change feed, so running servers pick them up within `PYLON_KEYS_SYNC_INTERVAL`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cli.errors import CliError, cli_settings, err_console, handle_errors, out_console
from cli.options import EnvFileOption, JsonOption

if TYPE_CHECKING:
    from app.keys.schemas import KeyInfo
    from app.keys.service import KeyService

app = typer.Typer(no_args_is_help=True, help="API keys: create, list, show, revoke, usage.")
T = TypeVar("T")


def _run(env_file: str | None, action: Callable[[KeyService], Awaitable[T]]) -> T:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import create_engine, load_models
    from app.keys.service import InvalidKeyRequest, KeyNotFoundError, KeyService

    settings = cli_settings(env_file)
    load_models()

    async def main() -> T:
        engine = create_engine(settings)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                return await action(KeyService(session))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (KeyNotFoundError, InvalidKeyRequest) as exc:
        raise CliError(str(exc)) from None


def _usage_error(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=2)


def _print_table(table: Any) -> None:
    # Piped output has no terminal width; Rich would squeeze to 80 columns and cut ids and scopes.
    from rich.console import Console

    console = out_console if out_console.is_terminal else Console(width=200)
    console.print(table)


def _print_json(value: Any) -> None:
    import msgspec

    out_console.print_json(msgspec.json.encode(value).decode())


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def _table(keys: list[KeyInfo]) -> None:
    from rich.table import Table

    table = Table(title=None)
    # Ids, scopes and dates are read and copied from here: fold long cells, never cut them with an ellipsis.
    for column in ("id", "name", "status", "scopes", "rpm/tpm", "expires", "last used"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "expires", "last used"))
    for key in keys:
        style = {"active": "green", "expired": "yellow", "revoked": "red"}[key.status]
        table.add_row(
            key.id,
            key.name,
            f"[{style}]{key.status}[/{style}]",
            "\n".join(key.scopes),
            f"{key.rpm or '-'}/{key.tpm or '-'}",
            _when(key.expires_at),
            _when(key.last_used_at),
        )
    _print_table(table)


@app.command()
@handle_errors
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="A scope (repeat): neurons:read, inference, ...")
    ],
    identity: Annotated[str | None, typer.Option(help="Wallet identity the key may use.")] = None,
    netuid: Annotated[
        list[int] | None, typer.Option("--netuid", help="Allowed netuid (repeat); default any.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Allowed model (repeat); default any.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.", min=1)] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.", min=1)] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime such as 30d, 12h, 2w.")] = None,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Create a key and print its secret (shown this once)."""
    import msgspec

    from app.auth.scopes import Scope
    from app.keys.schemas import KeyCreate, parse_duration

    known = {str(s) for s in Scope}
    unknown = [s for s in scope if s not in known]
    if unknown:
        raise _usage_error(f"--scope: unknown {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    if expires is not None:
        try:
            parse_duration(expires)
        except ValueError as exc:
            raise _usage_error(f"--expires: {exc}") from None
    try:
        data = msgspec.convert(
            {
                "name": name,
                "scopes": scope,
                "identity": identity,
                "netuids": netuid or None,
                "models": model or None,
                "rpm": rpm,
                "tpm": tpm,
                "expires_in": expires,
            },
            KeyCreate,
        )
    except msgspec.ValidationError as exc:
        raise _usage_error(str(exc)) from None
    from app.weights.identities import identity_names

    # The same check as the API's: a key bound to an identity this Pylon does not sign for is refused.
    identities = identity_names(cli_settings(env_file))
    created = _run(env_file, lambda service: service.create(data, identities=identities))
    if json_output:
        _print_json(created)
        return
    err_console.print(
        f"created key [bold]{created.id}[/bold] ({created.name}); the secret is shown only now:"
    )
    out_console.print(created.key, highlight=False, soft_wrap=True)


@app.command("list")
@handle_errors
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all/--active", help="Include revoked keys.")] = True,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """List keys (never their secrets)."""
    keys = _run(env_file, lambda service: service.list(include_revoked=all_keys))
    if json_output:
        _print_json(keys)
    else:
        _table(keys)


@app.command()
@handle_errors
def show(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Show one key."""
    key = _run(env_file, lambda service: service.get(key_id))
    if json_output:
        _print_json(key)
    else:
        _table([key])


@app.command()
@handle_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Revoke a key; running servers refuse it within about a second."""
    key = _run(env_file, lambda service: service.revoke(key_id))
    if json_output:
        _print_json(key)
    else:
        err_console.print(f"revoked key [bold]{key.id}[/bold] ({key.name})")


@app.command()
@handle_errors
def usage(
    key_id: Annotated[str, typer.Argument(help="The key's id (or an Epistula hotkey).")],
    days: Annotated[int, typer.Option(help="How many days back.", min=1, max=366)] = 30,
    json_output: JsonOption = False,
    env_file: EnvFileOption = None,
) -> None:
    """Requests and tokens per day."""
    from rich.table import Table

    report = _run(env_file, lambda service: service.usage(key_id, days=days))
    if json_output:
        _print_json(report)
        return
    table = Table(title=f"usage of {report.id} since {report.since}")
    for column in ("day", "requests", "errors", "prompt tokens", "completion tokens"):
        table.add_column(column, justify="right" if column != "day" else "left")
    for day in report.days:
        table.add_row(
            str(day.day),
            str(day.requests),
            str(day.errors),
            str(day.prompt_tokens),
            str(day.completion_tokens),
        )
    totals = report.totals
    table.add_row(
        "[bold]total[/bold]",
        str(totals.requests),
        str(totals.errors),
        str(totals.prompt_tokens),
        str(totals.completion_tokens),
    )
    _print_table(table)
