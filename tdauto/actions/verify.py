"""The ``verify`` action: health checks against the live release, and its ``Check`` model.

A check is exactly one of ``path_exists`` (relative to the release ``current`` points to),
``command`` (argv, run in that release, exit 0), ``http`` (a URL answering ``status``) or
``tcp`` (``host:port`` accepting a connection). A ``command``'s program must be listed in
``TDAUTO_CHECK_ALLOW`` (the ``CHECKS`` list of ``programs.py``); one that is not is refused at
``create_task`` and, before any check runs, at run time. Every check runs, so a failure names
all that failed; the usual task puts ``on_failure: [rollback, verify]`` on it, so a release
that fails is switched back by itself.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto import outbound
from tdauto.actions.context import ActionContext
from tdauto.actions.deploy_params import check_argv, confined_param, confined_path
from tdauto.actions.paths import held
from tdauto.actions.programs import CHECKS, checked_argv
from tdauto.actions.registry import action
from tdauto.actions.releases import App
from tdauto.errors import ActionError

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def _vet(info: ValidationInfo, field: str, host: str) -> None:
    settings = (info.context or {}).get("settings")
    if settings is not None:
        outbound.check_host(field, host, settings.outbound_allow)


class Check(BaseModel):
    """One health check: exactly one of ``path_exists`` (relative to the release),
    ``command`` (argv, run in the release, exit 0), ``http`` (URL answering ``status``) or
    ``tcp`` (``host:port`` accepting a connection); each within ``timeout_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path_exists: str | None = None
    command: list[str] | None = None
    http: str | None = None
    status: int = Field(default=200, ge=100, le=599)
    tcp: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=600)

    _cmd = field_validator("command")(classmethod(lambda cls, v, info: check_argv(v, info)))

    @field_validator("path_exists")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or value.startswith("/") or ".." in PurePosixPath(value).parts
        ):
            raise ValueError(f"path_exists {value!r} must be relative to the release, without ..")
        return value

    @field_validator("http")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"http {value!r} must be an http:// or https:// URL with a host")
            _vet(info, "http", parts.hostname)
        return value

    @field_validator("tcp")
    @classmethod
    def _host_port(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            match = _HOST_PORT.match(value)
            if not match or not 0 < int(match["port"]) < 65536:
                raise ValueError(f"tcp {value!r} must be host:port, e.g. 127.0.0.1:8000")
            _vet(info, "tcp", match["host"])
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        kinds = [k for k in ("path_exists", "command", "http", "tcp") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(
                "each check is exactly one of path_exists, command, http, tcp; "
                f"got {kinds or 'none'}"
            )
        if "status" in self.model_fields_set and not self.http:
            raise ValueError("status applies to http checks only")
        return self

    @property
    def label(self) -> str:
        if self.command:
            return "command " + " ".join(self.command)
        kind = next(k for k in ("path_exists", "http", "tcp") if getattr(self, k))
        return f"{kind} {getattr(self, kind)}"


class VerifyParams(BaseModel):
    """Params of ``verify``.

    - ``checks`` (required): a list of checks (see ``Check``); all must pass.
    - ``app_dir``: the application directory; required by ``path_exists`` and ``command``
      checks, which run against the release ``current`` points to.
    """

    model_config = ConfigDict(extra="forbid")

    checks: list[Check] = Field(min_length=1, description="health checks, all must pass")
    app_dir: str | None = Field(default=None, description="application directory")

    @field_validator("app_dir")
    @classmethod
    def _app_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else confined_param(value, info)

    @model_validator(mode="after")
    def _needs_app_dir(self) -> VerifyParams:
        if self.app_dir is None and any(c.path_exists or c.command for c in self.checks):
            raise ValueError("path_exists and command checks need app_dir (the release's app)")
        return self


@action("verify", resource_class="cpu", params=VerifyParams, process_type="deployment")
def verify(
    ctx: ActionContext, *, checks: list[Check], app_dir: str | None = None
) -> dict[str, Any]:
    """Run health checks against the live release; fail (kind ``verify``) if any fails.

    Output: ``release``, ``path`` and ``checks`` (``check``, ``ok``, ``detail``,
    ``duration_s`` each). Every check runs, so the error names all that failed.
    """
    for number, check in enumerate(checks):  # refused before any check runs, not a failed check
        if check.command is not None:
            checked_argv(check.command, CHECKS, ctx.settings, param=f"checks.{number}.command")
    release, where, folder = None, None, None
    with contextlib.ExitStack() as stack:
        if app_dir is not None:
            app = App(confined_path(ctx, app_dir, "app_dir"))
            release = app.current()
            if release is None:
                raise ActionError(f"{app.current_link} does not exist: nothing deployed", "verify")
            try:  # the release itself, held open: a check command runs in it
                folder = stack.enter_context(held(ctx, app.current_link, "app_dir"))
            except FileNotFoundError:
                raise ActionError(f"{app.release_path(release)} is gone", "verify") from None
            where = folder.path
        results = []
        for check in checks:
            started = time.monotonic()
            ok, detail = _check(ctx, check, where, folder.pinned if folder else None)
            took = round(time.monotonic() - started, 3)
            results.append({"check": check.label, "ok": ok, "detail": detail, "duration_s": took})
            log = ctx.logger.info if ok else ctx.logger.error
            log("verify %s: %s (%s)", check.label, "ok" if ok else "FAILED", detail)
    failed = [f"{r['check']} ({r['detail']})" for r in results if not r["ok"]]
    if failed:
        raise ActionError(
            f"release {release or '?'} failed {len(failed)} of {len(results)} checks: "
            + "; ".join(failed),
            "verify",
        )
    return {"release": release, "path": str(where) if where else None, "checks": results}


def _check(
    ctx: ActionContext, check: Check, release: Path | None, pinned: Path | None
) -> tuple[bool, str]:
    """One check; ``release`` is the live release's path, ``pinned`` the same folder held open."""
    if check.path_exists is not None:
        assert release is not None
        target = (release / check.path_exists).resolve()
        if target != release and release not in target.parents:
            return False, f"leads out of the release to {target}"
        return (True, "exists") if target.exists() else (False, "missing")
    if check.command is not None:
        try:
            result = ctx.run(
                check.command,
                programs=CHECKS,
                param="command",
                cwd=pinned,
                timeout_s=check.timeout_s,
                check=False,
            )
        except ActionError as exc:
            if exc.kind == "cancelled":
                raise
            return False, str(exc)
        except OSError as exc:
            return False, f"cannot run {check.command[0]}: {exc.strerror or exc}"
        tail = result.output.strip().splitlines()[-1:] if result.returncode else []
        return result.returncode == 0, f"exit {result.returncode}" + "".join(f": {t}" for t in tail)
    allow = ctx.settings.outbound_allow
    try:
        if check.http is not None:
            return _http(check.http, check.status, check.timeout_s, allow)
        assert check.tcp is not None
        match = _HOST_PORT.match(check.tcp)
        assert match is not None
        host, port = match["host"].strip("[]"), int(match["port"])
        outbound.connect(host, port, check.timeout_s, allow).close()
        return True, "connected"
    except outbound.OutboundRefused as exc:
        return False, str(exc)
    except OSError as exc:
        return False, f"cannot connect: {exc.strerror or exc}"


def _http(url: str, expected: int, timeout_s: float, allow: list[str]) -> tuple[bool, str]:
    """GET ``url`` directly (no proxy: a health check asks the app itself), to vetted
    addresses only (``tdauto.outbound``)."""
    opener = outbound.opener(allow, urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": "tdauto-verify"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"unreachable: {reason}"
    return status == expected, f"status {status}" + (
        "" if status == expected else f", expected {expected}"
    )


__all__ = ["Check", "VerifyParams", "verify"]
