"""Connections to PostgreSQL and Redis for actions, with no password in params or argv.

A password in a task's params would be stored with the task definition and shown by
``tdauto task show``; in a command's argv it is visible to every local user through ``ps``.
So a DSN or URL that carries one is refused (naming the fix), and the password comes from the
worker's environment instead: ``password_env`` names a variable holding it, which is handed to
the child as ``PGPASSWORD`` or ``REDISCLI_AUTH`` (never on its command line); for PostgreSQL,
``passfile`` (a confined ``.pgpass``-format file, as ``PGPASSFILE``) or the worker's own
``PGPASSWORD``/``PGPASSFILE``/``~/.pgpass`` work too. ``display()`` is what logs and outputs
show. A DSN's other options are parsed as libpq parses them and those that read files or a
service file are confined or refused (``pgoptions.py``).

PostgreSQL client programs (``pg_dump``, ``pg_restore``, ``psql``) are found on ``PATH``, else
in the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout); they run through the
``TOOLS`` list of ``programs.py``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from tdauto import outbound
from tdauto.actions import pg_hosts, pgoptions, vetted_redis
from tdauto.actions import secrets as task_secrets
from tdauto.actions.context import confine
from tdauto.errors import ActionError, InvalidInput
from tdauto.redact import redact_text

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PG_FIELDS = ("dsn", "host", "port", "dbname", "user", "password_env", "passfile")
REDIS_FIELDS = ("url", "password_env")


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(
            "password_env must be the NAME of an environment variable of the worker (letters, "
            "digits, _), e.g. APP_DB_PASSWORD, not the password itself (the value is not shown)"
        )
    return value


def _check_password_env(value: str | None, info: ValidationInfo) -> str | None:
    value = _env_name(value)
    settings = (info.context or {}).get("settings")
    if value is not None and settings is not None:
        reason = task_secrets.refusal(value, settings.task_secrets)
        if reason is not None:
            raise ValueError(reason)
    return value


def _password_from(name: str | None, allow: Sequence[str] | None) -> str | None:
    """The password in variable ``name``. ``allow`` is ``TDAUTO_TASK_SECRETS`` when a task
    asks (``tdauto.actions.secrets``); None only for an operator's own restore."""
    if name is None:
        return None
    if allow is None:
        value = os.environ.get(name)
    else:
        value = task_secrets.read("password_env", name, allow)
    if value is None:
        raise ActionError(
            f"password_env: environment variable {name} is not set on this host; export it for the "
            "worker (or the shell running restore) or drop password_env",
            "config",
        )
    return value


class PostgresConn(BaseModel):
    """A PostgreSQL database: ``dsn`` (URI or ``key=value`` conninfo) or its parts.

    ``connect_timeout_s`` becomes ``PGCONNECT_TIMEOUT``. Paths are confined when the
    validation context has ``settings``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: str | None = Field(default=None, description="postgresql://user@host:port/db, no password")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    dbname: str | None = None
    user: str | None = None
    password_env: str | None = Field(default=None, description="env variable with the password")
    passfile: str | None = Field(default=None, description=".pgpass-format file (PGPASSFILE)")
    connect_timeout_s: int = Field(default=10, ge=1, le=300)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Parsed as libpq parses it; options that read files or services are refused or
        confined (``pgoptions``), before any client program sees them."""
        if value is None:
            return None
        if not value.strip():
            raise ValueError("dsn is empty; give postgresql://user@host:port/dbname")
        is_uri = value.startswith(pgoptions.URI_PREFIXES)
        if not is_uri and "://" in value:
            raise ValueError(
                f"dsn {redact_text(value)!r} is not a PostgreSQL DSN; use "
                "postgresql://user@host:port/dbname or 'host=... dbname=...'"
            )
        options = pgoptions.parse(value)
        if "password" in options:
            raise ValueError(
                _pg_password_help(redact_text(value) if is_uri else "the conninfo given")
            )
        settings = (info.context or {}).get("settings")
        pgoptions.check(options, settings.confined_paths if settings is not None else None)
        return value

    @field_validator("password_env")
    @classmethod
    def _password_env(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_password_env(value, info)

    @field_validator("passfile")
    @classmethod
    def _passfile(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = (info.context or {}).get("settings")
        if value is not None and settings is not None:
            return str(confine(value, settings.confined_paths, "passfile"))
        return value

    @_model_validator(mode="after")
    def _one_form(self, info: ValidationInfo) -> PostgresConn:
        parts = [f for f in ("host", "port", "dbname", "user") if getattr(self, f) is not None]
        if self.dsn is not None and parts:
            raise ValueError(
                f"give either dsn or {'/'.join(parts)}, not both (put them in the dsn)"
            )
        if self.dsn is None and self.dbname is None:
            raise ValueError("name the database: dsn: postgresql://user@host/db, or dbname")
        settings = (info.context or {}).get("settings")
        if settings is not None:
            field = "dsn" if self.dsn is not None else "host"
            pg_hosts.check(field, self.conninfo(), settings.outbound_allow)
        return self

    def conninfo(self) -> str:
        """What ``--dbname`` gets: the DSN, or ``key=value`` pairs (never a password)."""
        if self.dsn is not None:
            return self.dsn
        pairs = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}
        return " ".join(f"{k}={_quote(str(v))}" for k, v in pairs.items() if v is not None)

    def vetted_conninfo(self, allow: Sequence[str]) -> str:
        """``conninfo()`` pinned to vetted addresses (``hostaddr``), for a task's connection;
        ``allow`` is ``TDAUTO_OUTBOUND_ALLOW``."""
        return pg_hosts.vetted(self.conninfo(), allow)

    def display(self) -> str:
        return redact_text(self.conninfo())

    def env(self, allow: Sequence[str] | None) -> dict[str, str]:
        """The child's environment: this one plus the password and timeout for libpq
        (``allow``: see ``_password_from``)."""
        env = dict(os.environ)
        password = _password_from(self.password_env, allow)
        if password is not None:
            env["PGPASSWORD"] = password
        if self.passfile is not None:
            env["PGPASSFILE"] = self.passfile
        env["PGCONNECT_TIMEOUT"] = str(self.connect_timeout_s)
        return env

    def manifest(self) -> dict[str, Any]:
        """What a backup's manifest records so restore can find the database again."""
        return self.model_dump(exclude_none=True)


def _pg_password_help(what: str) -> str:
    return (
        f"{what} carries a password; passwords never go in params (they would be stored with "
        "the task and visible in ps). Remove it and set password_env: NAME (an environment "
        "variable of the worker holding it), passfile, or PGPASSFILE/~/.pgpass for the worker"
    )


def _quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RedisConn(BaseModel):
    """A Redis server: ``url`` (``redis://`` or ``rediss://``, user allowed, no password)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="redis://[user@]host:port/db")
    password_env: str | None = Field(default=None, description="env variable with the password")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value)
        shown = redact_text(value)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"url {shown!r}: use redis://host:port/db or rediss:// for TLS")
        if parts.password is not None:
            raise ValueError(
                f"url {shown!r} carries a password; passwords never go in params. Remove it "
                "and set password_env: NAME (an environment variable of the worker holding it)"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"url {shown!r}: {exc}") from None
        if not parts.hostname:
            raise ValueError(f"url {shown!r} names no host; use redis://host:port/db")
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ValueError(f"url {shown!r}: the path must be a database number, e.g. /0")
        settings = (info.context or {}).get("settings")
        if settings is not None:
            outbound.check_host("url", parts.hostname, settings.outbound_allow)
        return value

    @field_validator("password_env")
    @classmethod
    def _password_env(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_password_env(value, info)

    @property
    def _parts(self) -> Any:
        return urlsplit(self.url)

    @property
    def db(self) -> int:
        return int(self._parts.path.strip("/") or 0)

    def display(self) -> str:
        return redact_text(self.url)

    def client(
        self,
        allow: Sequence[str] | None,
        timeout_s: float = 10.0,
        db: int | None = None,
        outbound_allow: Sequence[str] | None = None,
    ) -> redis.Redis:
        """A redis-py client (no retries: a check or a restore reports the first failure);
        ``allow``: see ``_password_from``. A task's client gets ``outbound_allow``
        (``TDAUTO_OUTBOUND_ALLOW``) and connects only to vetted addresses."""
        parts = self._parts
        options: dict[str, Any] = {
            "host": parts.hostname,
            "port": parts.port or 6379,
            "db": self.db if db is None else db,
            "username": unquote(parts.username) if parts.username else None,
            "password": _password_from(self.password_env, allow),
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 0),
        }
        tls = parts.scheme == "rediss"
        if outbound_allow is not None:
            return vetted_redis.client(outbound_allow, ssl=tls, **options)
        return redis.Redis(ssl=tls, **options)

    def cli_argv(self, outbound_allow: Sequence[str]) -> list[str]:
        """``redis-cli`` connection options. Not ``-u``: redis-cli reads ``user@`` in a URL as
        a password; the password itself goes in ``REDISCLI_AUTH`` (see ``cli_env``). The host
        is resolved and vetted here (``tdauto.outbound``) and redis-cli given the address
        (``--sni`` keeps the name for TLS)."""
        parts = self._parts
        port = parts.port or 6379
        address = outbound.resolve(str(parts.hostname), port, outbound_allow)[0][4][0]
        argv = ["-h", str(address), "-p", str(port)]
        if parts.username:
            argv += ["--user", unquote(parts.username)]
        if parts.scheme == "rediss":
            argv += ["--tls", "--sni", str(parts.hostname)]
        return argv

    def cli_env(self, allow: Sequence[str] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        password = _password_from(self.password_env, allow)
        if password is not None:
            env["REDISCLI_AUTH"] = password
        return env

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def connection_for(
    kind: str, values: dict[str, Any], context: dict[str, Any] | None = None
) -> PostgresConn | RedisConn | None:
    """The connection of a ``postgres`` or ``redis`` target from its flat params.

    ``values`` holds only the keys given; a key of the other kind (``url`` for postgres) is
    refused naming the field, as is any of them for a file or store kind.
    """
    fields = {"postgres": PG_FIELDS, "redis": REDIS_FIELDS}.get(kind, ())
    for key in values:
        if key not in fields:
            owner = "redis" if key == "url" else "postgres"
            raise InvalidInput(key, f"{key} is for kind {owner}, not {kind}")
    if kind == "postgres":
        return _validated(PostgresConn, values, context)
    if kind == "redis":
        if "url" not in values:
            raise InvalidInput("url", "redis targets need url: redis://host:port")
        return _validated(RedisConn, values, context)
    return None


def revalidate(
    conn: PostgresConn | RedisConn, context: dict[str, Any] | None
) -> PostgresConn | RedisConn:
    """``conn`` validated again, e.g. with settings in the context to confine its paths."""
    return _validated(type(conn), conn.model_dump(exclude_none=True), context)


def _validated(
    model: type[PostgresConn] | type[RedisConn], values: dict[str, Any], context: Any
) -> PostgresConn | RedisConn:
    try:
        return model.model_validate(values, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        default = "dsn" if model is PostgresConn else "url"
        field = ".".join(str(p) for p in first["loc"]) or default
        message = first["msg"].removeprefix("Value error, ").removeprefix(f"{field}: ")
        raise InvalidInput(field, message) from None


def pg_tool(name: str) -> str:
    """The path of PostgreSQL client program ``name``; a clear error when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if candidates:
        return max(candidates, key=lambda p: _version_key(Path(p).parts[-3]))
    raise ActionError(
        f"{name} not found on PATH or in /usr/lib/postgresql/*/bin: install the PostgreSQL "
        "client programs (apt-get install -y postgresql-client) on this host",
        "not_found",
    )


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)) or (0,)
