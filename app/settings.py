"""Pylon's settings: one frozen msgspec tree read from `PYLON_*` variables and an optional env file.

Each section names the prefix of its variables, so a field `url` of `DatabaseSettings` is `PYLON_DB_URL`.
A wrong value stops the start with a message naming the variable and what it expects.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec

ENV_FILE_VARIABLE = "PYLON_ENV_FILE"
SECRET_FIELDS = frozenset({"admin_token", "metrics_token", "url", "api_key"})


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    env_prefix: ClassVar[str] = "PYLON_"


class DatabaseSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_DB_"
    # Empty means a SQLite file in the data dir.
    url: str = ""
    pool_size: int = 10
    max_overflow: int = 10
    echo: bool = False


class ChainSettings(Section, frozen=True, kw_only=True):
    # `local` is the in-process simulated subnet; otherwise finney, test, archive or a ws(s):// URL.
    network: str = "local"
    archive_network: str = "archive"
    archive_blocks_cutoff: int = 300
    # The subnet served by the default-netuid routes (bittensor-pylon's `PYLON_NETUID`).
    netuid: int = 1
    # Every chain call and extrinsic is bounded by these.
    call_timeout: float = 10.0
    extrinsic_timeout: float = 60.0
    local_block_time: float = 12.0
    local_netuids: list[int] = msgspec.field(default_factory=lambda: [1])
    local_neurons: int = 256
    local_seed: int = 0


class AuthSettings(Section, frozen=True, kw_only=True):
    admin_token: str = ""
    # /metrics answers 403 while this is empty.
    metrics_token: str = ""


class LoggingSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_LOG_"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # auto: JSON lines when stderr is not a terminal, a readable console otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ServerSettings(Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    app_name: str = "pylon"
    # Where the SQLite file, the dev wallet and the metrics scratch space live.
    data_dir: str = ".pylon"
    # Longest request body accepted, in bytes.
    max_body_size: int = 8 * 1024 * 1024
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    db: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    chain: ChainSettings = msgspec.field(default_factory=ChainSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'pylon.sqlite3'}"


# Top-level scalar fields and the variables they are read from.
TOP_LEVEL_PREFIX = "PYLON_"


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read KEY=VALUE lines; `#` starts a comment line; quotes around a value are stripped."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(
            f"{ENV_FILE_VARIABLE}: cannot read env file {str(path)!r}: {exc.strerror}"
        ) from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _field_value(env_name: str, raw: str, field_type: Any) -> Any:
    """Convert one variable to its field's type, or fail naming the variable."""
    value: Any = raw
    origin = getattr(field_type, "__origin__", None)
    if origin in (list, tuple, set, dict) or (
        isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)
    ):
        stripped = raw.strip()
        if stripped.startswith(("[", "{")):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{env_name}: not valid JSON ({exc.msg}): {raw!r}") from exc
        else:
            value = [item.strip() for item in stripped.split(",") if item.strip()]
    elif origin is Literal:
        # Levels and formats are case-insensitive: `info` means `INFO`.
        value = next((choice for choice in field_type.__args__ if str(choice).lower() == raw.lower()), raw)
    try:
        return msgspec.convert(value, type=field_type, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec's own message adds where inside a list or struct the bad item sits.
        detail = f" ({exc})" if "$" in str(exc) else ""
        raise SettingsError(f"{env_name}: expected {_describe(field_type)}, got {raw!r}{detail}") from exc


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _describe(field_type: Any) -> str:
    """What a variable of this type should hold, in words."""
    origin = getattr(field_type, "__origin__", None)
    if origin is Literal:
        return "one of " + ", ".join(str(choice) for choice in field_type.__args__)
    if origin in (list, tuple, set):
        items = ", ".join(_PLURALS.get(arg, str(arg)) for arg in field_type.__args__ if arg is not Ellipsis)
        return f"a comma-separated or JSON list of {items}"
    if field_type in _TYPE_NAMES:
        return _TYPE_NAMES[field_type]
    return getattr(field_type, "__name__", str(field_type))


def _section_values(section_type: type[Section], environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    hints = msgspec.structs.fields(section_type)
    for field in hints:
        env_name = f"{section_type.env_prefix}{field.name.upper()}"
        if env_name in environ:
            values[field.name] = _field_value(env_name, environ[env_name], field.type)
    return values


def env_names() -> list[str]:
    """Every variable Pylon reads, for documentation and `pylon config show`."""
    names = [f"{TOP_LEVEL_PREFIX}{f.name.upper()}" for f in _top_level_scalars()]
    for field in _sections():
        section_type = field.type
        names += [f"{section_type.env_prefix}{f.name.upper()}" for f in msgspec.structs.fields(section_type)]
    return names


def _sections() -> list[msgspec.structs.FieldInfo]:
    return [
        f
        for f in msgspec.structs.fields(Settings)
        if isinstance(f.type, type) and issubclass(f.type, Section)
    ]


def _top_level_scalars() -> list[msgspec.structs.FieldInfo]:
    section_names = {f.name for f in _sections()}
    return [f for f in msgspec.structs.fields(Settings) if f.name not in section_names]


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | None = None) -> Settings:
    """Build the settings from the environment, an env file underneath it, and the defaults under both.

    Variables set in the environment win over the env file, so one file can serve several instances.
    """
    env = dict(os.environ if environ is None else environ)
    env_file = env_file or env.get(ENV_FILE_VARIABLE)
    merged: dict[str, str] = {}
    if env_file:
        merged.update(parse_env_file(env_file))
    merged.update(env)

    kwargs: dict[str, Any] = {}
    for field in _top_level_scalars():
        env_name = f"{TOP_LEVEL_PREFIX}{field.name.upper()}"
        if env_name in merged:
            kwargs[field.name] = _field_value(env_name, merged[env_name], field.type)
    for field in _sections():
        section_type = field.type
        try:
            kwargs[field.name] = section_type(**_section_values(section_type, merged))
        except (TypeError, msgspec.ValidationError) as exc:
            raise SettingsError(f"{section_type.env_prefix}*: {exc}") from exc
    settings = Settings(**kwargs)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Checks that span more than one field's type."""
    url = settings.database_url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise SettingsError(
            "PYLON_DB_URL: expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL, "
            f"got {mask_url(url)!r}"
        )
    if not 1 <= settings.server.port <= 65535:
        raise SettingsError(f"PYLON_PORT: expected a port from 1 to 65535, got {settings.server.port}")
    if settings.server.workers < 1:
        raise SettingsError(f"PYLON_WORKERS: expected at least 1, got {settings.server.workers}")
    if settings.chain.local_block_time <= 0:
        raise SettingsError(
            f"PYLON_LOCAL_BLOCK_TIME: expected seconds above 0, got {settings.chain.local_block_time}"
        )
    if settings.chain.netuid < 0:
        raise SettingsError(f"PYLON_NETUID: expected a netuid of 0 or more, got {settings.chain.netuid}")


_URL_SECRET_PARAMS = re.compile(r"([?&](?:password|passwd|pwd|token|api_key|apikey|secret)=)([^&#]*)", re.I)


def _url_parts(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, user, password, host and the rest) of a URL with credentials, or None."""
    scheme, sep, rest = url.partition("://")
    # The last `@` ends the credentials: an unencoded password may itself hold `@`, `:` or `/`.
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return None
    user, _, password = credentials.partition(":")
    return scheme, user, password, host


def mask_url(url: str) -> str:
    """Hide a password in a URL, in its credentials or its query (`?password=`)."""
    parts = _url_parts(url)
    if parts is not None:
        scheme, user, password, host = parts
        if password:
            url = f"{scheme}://{user}:***@{host}"
    return _URL_SECRET_PARAMS.sub(r"\1***", url)


def is_secret_field(name: str) -> bool:
    """Fields whose value is secret: the known names and any `*_token`, `*_key`, `*_secret`, `*password`."""
    return name in SECRET_FIELDS or name.endswith(("_token", "_key", "_secret", "password"))


def _secret_strings(data: Any, found: list[str]) -> Any:
    """Mask secrets in plain data, collecting the raw secret values in `found`."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str) and value and is_secret_field(str(key)) and "://" not in value:
                found.append(value)
                out[key] = "***"
            else:
                out[key] = _secret_strings(value, found)
        return out
    if isinstance(data, list):
        return [_secret_strings(item, found) for item in data]
    if isinstance(data, str) and "://" in data:
        # Any URL (database, backend, chain node) may carry a password.
        parts = _url_parts(data)
        if parts is not None and parts[2]:
            found.append(parts[2])
        found.extend(match.group(2) for match in _URL_SECRET_PARAMS.finditer(data) if match.group(2))
        return mask_url(data)
    return data


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with secrets hidden, for `pylon config show`."""
    result: dict[str, Any] = _secret_strings(msgspec.to_builtins(settings), [])
    result["database_url"] = mask_url(settings.database_url)
    return result


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in the settings (tokens, URL passwords), for the log redactor."""
    found: list[str] = []
    _secret_strings(msgspec.to_builtins(settings), found)
    _secret_strings(settings.database_url, found)
    return sorted(set(found))
