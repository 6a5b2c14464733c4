"""The ``health_check`` action: HTTP(S), TCP, free disk, a process, Redis and PostgreSQL.

Every check runs, in order, even after one fails, so one run reports everything that is
wrong; the action then fails (``ActionError`` kind ``health``) naming each failed check. Each
check has a ``timeout_s`` and reports its ``latency_ms``.

- ``http``/``https``: ``url``, ``expect_status`` (default 200), ``body_contains`` (substring)
  and/or ``body_regex``, ``max_latency_ms`` (time to the whole response), ``verify_tls``.
  Redirects are followed; ``expect_status`` is the final response's.
- ``tcp``: a connection to ``host``:``port`` opens.
- ``disk``: free space of the filesystem holding ``path`` (confined; relative to the data dir,
  which is the default), ``min_free_percent`` and/or ``min_free_bytes`` ("10GB", "500MiB" or
  bytes). Free = available to non-root.
- ``process``: at least ``min_count`` live processes named ``name`` (psutil: process name, or
  the file name of its executable or of its argv[0]).

Every check also takes ``label`` (its name in the report; default from what it checks).
- ``redis``: ``PING`` over redis-py (``url`` without password; ``password_env``).
- ``postgres``: ``SELECT 1`` through ``psql`` (the PostgreSQL client, run with ``ctx.run``;
  no Python driver needed), so authentication is checked, not just that the port answers.
"""

from __future__ import annotations

import abc
import logging
import re
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto import outbound
from tdauto.actions.context import ActionContext, confine
from tdauto.actions.dbconn import PostgresConn, RedisConn, pg_tool
from tdauto.actions.programs import TOOLS
from tdauto.actions.registry import action
from tdauto.errors import ActionError
from tdauto.redact import redact_text

BODY_CAP_BYTES = 1_000_000  # of an HTTP body read for matching
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*$", re.I)


class CheckFailed(Exception):
    """A check ran and its verdict is no; ``detail`` goes in the report."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


def _check_host(info: ValidationInfo, field: str, host: str | None) -> None:
    settings = (info.context or {}).get("settings")
    if settings is not None:
        outbound.check_host(field, host, settings.outbound_allow)


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    label: str | None = Field(default=None, description="name in the report")
    timeout_s: float = Field(default=5.0, gt=0, le=300)

    def title(self) -> str:
        return self.label or self.default_label()

    @abc.abstractmethod
    def default_label(self) -> str:
        """The check's name in the report when it has no ``label``; each kind of check
        defines its own (this base is never used as a check)."""


class HttpCheck(_Check):
    type: Literal["http", "https"]
    url: str
    expect_status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = None
    body_regex: str | None = None
    max_latency_ms: float | None = Field(default=None, gt=0)
    verify_tls: bool = True

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"body_regex {value!r} is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _scheme(self, info: ValidationInfo) -> HttpCheck:
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme not in ("http", "https"):
            raise ValueError(f"url {redact_text(self.url)!r} must start with http:// or https://")
        if self.type == "https" and scheme != "https":
            raise ValueError(f"a type: https check needs an https:// url, got {scheme}://")
        _check_host(info, "url", urlsplit(self.url).hostname)
        return self

    def default_label(self) -> str:
        return redact_text(self.url)


class TcpCheck(_Check):
    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        _check_host(info, "host", value)
        return value

    def default_label(self) -> str:
        return f"tcp {self.host}:{self.port}"


class DiskCheck(_Check):
    type: Literal["disk"]
    path: str | None = Field(default=None, description="default: the data dir")
    min_free_percent: float | None = Field(default=None, gt=0, lt=100)
    min_free_bytes: int | None = Field(default=None, ge=0)

    @field_validator("min_free_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _bound(self, info: ValidationInfo) -> DiskCheck:
        if self.min_free_percent is None and self.min_free_bytes is None:
            raise ValueError('give min_free_percent (e.g. 10) or min_free_bytes (e.g. "5GB")')
        settings = (info.context or {}).get("settings")
        if settings is not None:
            self.where(settings.data_path, settings.confined_paths)
        return self

    def where(self, data_dir: Path, allowed: list[Path]) -> Path:
        """The path checked, confined; relative paths are relative to the data dir."""
        return confine(data_dir / (self.path or "."), allowed, "path")

    def default_label(self) -> str:
        return f"disk {self.path or 'data dir'}"


class ProcessCheck(_Check):
    type: Literal["process"]
    name: str = Field(min_length=1, max_length=255, description="process name")
    min_count: int = Field(default=1, ge=1)

    def default_label(self) -> str:
        return f"process {self.name}"


class RedisCheck(_Check, RedisConn):
    type: Literal["redis"]
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    def default_label(self) -> str:
        return f"redis {self.display()}"


class PostgresCheck(_Check, PostgresConn):
    type: Literal["postgres"]
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    def default_label(self) -> str:
        return f"postgres {self.display()}"


Check = Annotated[
    HttpCheck | TcpCheck | DiskCheck | ProcessCheck | RedisCheck | PostgresCheck,
    Field(discriminator="type"),
]


class HealthCheckParams(BaseModel):
    """Params of ``health_check``: ``checks``, a non-empty list (see the module's doc)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    checks: list[Check] = Field(min_length=1)


def parse_size(value: str) -> int:
    """``"10GB"`` -> 10_000_000_000, ``"512MiB"`` -> 536_870_912; plain digits are bytes."""
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f'invalid size {value!r}; use bytes or e.g. "500MB", "10GiB"')
    number, prefix, binary = match.groups()
    power = "kmgtp".find(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


@action("health_check", resource_class="cpu", params=HealthCheckParams, process_type="maintenance")
def health_check(ctx: ActionContext, *, checks: list[Any]) -> dict[str, Any]:
    """Run every check; fail (kind ``health``) if any failed.

    Output: ``ok``, ``checks`` (each ``name``, ``type``, ``ok``, ``latency_ms``, ``error``
    and what the check measured), ``failed`` (names).
    """
    report = [_run_one(ctx, check) for check in checks]
    failed = [r for r in report if not r["ok"]]
    if failed:
        raise ActionError(
            f"{len(failed)} of {len(report)} health checks failed: "
            + "; ".join(f"{r['name']}: {r['error']}" for r in failed),
            "health",
        )
    return {"ok": True, "checks": report, "failed": []}


def _run_one(ctx: ActionContext, check: Any) -> dict[str, Any]:
    if ctx.cancelled:
        raise ActionError("health_check cancelled", "cancelled")
    started = time.monotonic()
    detail: dict[str, Any] = {}
    error = None
    try:
        detail = _RUNNERS[check.type](ctx, check)
    except CheckFailed as exc:
        error, detail = str(exc), exc.detail
    except ActionError as exc:
        if exc.kind == "cancelled":
            raise
        error = str(exc)
    except Exception as exc:  # a check's verdict, whatever its library raised
        error = f"{type(exc).__name__}: {exc}"
    latency_ms = detail.pop("latency_ms", None) or (time.monotonic() - started) * 1000
    result = {
        "name": check.title(),
        "type": check.type,
        "ok": error is None,
        "latency_ms": round(latency_ms, 1),
        "error": redact_text(error) if error else None,
        **detail,
    }
    ctx.logger.log(
        logging.INFO if error is None else logging.WARNING,
        "health %s: %s (%.1f ms)%s",
        result["name"],
        "ok" if error is None else "FAILED",
        result["latency_ms"],
        f": {result['error']}" if error else "",
    )
    return result


def _http(ctx: ActionContext, check: HttpCheck) -> dict[str, Any]:
    context = ssl.create_default_context()
    if not check.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = outbound.opener(ctx.settings.outbound_allow, tls=context)
    request = urllib.request.Request(check.url, headers={"User-Agent": "tdauto-health/1"})
    started = time.monotonic()
    try:
        with opener.open(request, timeout=check.timeout_s) as response:
            status, body = response.status, response.read(BODY_CAP_BYTES)
    except urllib.error.HTTPError as exc:  # 4xx/5xx: a status to judge, not a crash
        status, body = exc.code, exc.read(BODY_CAP_BYTES)
    except urllib.error.URLError as exc:
        raise CheckFailed(f"cannot reach {redact_text(check.url)}: {exc.reason}") from exc
    latency_ms = (time.monotonic() - started) * 1000
    text = body.decode("utf-8", "replace")
    detail = {"status": status, "latency_ms": latency_ms, "bytes": len(body)}
    problems = []
    if status != check.expect_status:
        problems.append(f"status {status}, expected {check.expect_status}")
    if check.body_contains is not None and check.body_contains not in text:
        problems.append(f"body does not contain {check.body_contains!r}")
    if check.body_regex is not None and not re.search(check.body_regex, text):
        problems.append(f"body does not match /{check.body_regex}/")
    if check.max_latency_ms is not None and latency_ms > check.max_latency_ms:
        problems.append(f"took {latency_ms:.0f} ms, over {check.max_latency_ms:g} ms")
    if problems:
        raise CheckFailed("; ".join(problems), **detail)
    return detail


def _tcp(ctx: ActionContext, check: TcpCheck) -> dict[str, Any]:
    started = time.monotonic()
    try:
        allow = ctx.settings.outbound_allow
        outbound.connect(check.host, check.port, check.timeout_s, allow).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CheckFailed(f"cannot connect to {check.host}:{check.port}: {reason}") from exc
    return {"latency_ms": (time.monotonic() - started) * 1000}


def _disk(ctx: ActionContext, check: DiskCheck) -> dict[str, Any]:
    path = check.where(ctx.data_dir, ctx.settings.confined_paths)
    usage = shutil.disk_usage(path)
    free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    detail: dict[str, Any] = {"free_bytes": usage.free, "total_bytes": usage.total}
    detail["free_percent"] = round(free_percent, 2)
    problems = []
    if check.min_free_percent is not None and free_percent < check.min_free_percent:
        problems.append(f"{free_percent:.1f}% free, under {check.min_free_percent:g}%")
    if check.min_free_bytes is not None and usage.free < check.min_free_bytes:
        problems.append(f"{usage.free} bytes free, under {check.min_free_bytes}")
    if problems:
        raise CheckFailed(f"{path}: " + "; ".join(problems), **detail)
    return detail


def _process(ctx: ActionContext, check: ProcessCheck) -> dict[str, Any]:
    pids = []
    for proc in psutil.process_iter(["name", "exe", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        names = {info["name"]}
        names.add((info["exe"] or "").rsplit("/", 1)[-1])
        names.add(((info["cmdline"] or [""])[0]).rsplit("/", 1)[-1])
        if check.name in names:
            pids.append(proc.pid)
    detail = {"count": len(pids), "pids": sorted(pids)[:20]}
    if len(pids) < check.min_count:
        raise CheckFailed(
            f"{len(pids)} processes named {check.name!r}, expected at least {check.min_count}",
            **detail,
        )
    return detail


def _redis(ctx: ActionContext, check: RedisCheck) -> dict[str, Any]:
    settings = ctx.settings
    client = check.client(
        settings.task_secrets, timeout_s=check.timeout_s, outbound_allow=settings.outbound_allow
    )
    started = time.monotonic()
    try:
        client.ping()
    finally:
        client.close()
    return {"latency_ms": (time.monotonic() - started) * 1000}


def _postgres(ctx: ActionContext, check: PostgresCheck) -> dict[str, Any]:
    conninfo = check.vetted_conninfo(ctx.settings.outbound_allow)  # before psql is looked for
    argv = [pg_tool("psql"), "--no-password", "--no-psqlrc", "--tuples-only", "--no-align"]
    argv += ["--quiet", f"--dbname={conninfo}", "--command=SELECT 1"]
    env = check.env(ctx.settings.task_secrets)
    env["PGCONNECT_TIMEOUT"] = str(max(1, round(check.timeout_s)))
    started = time.monotonic()
    result = ctx.run(argv, programs=TOOLS, timeout_s=check.timeout_s, env=env, check=False)
    latency_ms = (time.monotonic() - started) * 1000
    if result.returncode != 0 or result.output.strip() != "1":
        tail = " ".join(redact_text(result.output[-300:]).split()) or f"exit {result.returncode}"
        raise CheckFailed(f"SELECT 1 failed: {tail}", latency_ms=latency_ms)
    return {"latency_ms": latency_ms}


_RUNNERS: dict[str, Callable[[ActionContext, Any], dict[str, Any]]] = {
    "http": _http,
    "https": _http,
    "tcp": _tcp,
    "disk": _disk,
    "process": _process,
    "redis": _redis,
    "postgres": _postgres,
}
